"""Primitive changes on one host over its one connection: each a quoted argv or an SFTP write;
the megabytes (wheels, the CLI tarball) go as one stream each over ``ssh``."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cluster.deploy.claudecli import CliPack
from cluster.deploy.facts import INSTALLED_MARK, HostFacts, gather_facts, probe_argv
from cluster.deploy.installer import INSTALL, install_args
from cluster.deploy.wanted import DirSpec, FileSpec
from cluster.errors import ConfigError
from cluster.transport import get_bytes, put_bytes, run
from cluster.transport.openssh import SshTarget, feed
from cluster.units import layout

TMP_SUFFIX = ".deploy-tmp"
PART_SUFFIX = ".part"  # a wheel is written here, then renamed
BACKUP_SUFFIX = ".previous"
INSTALL_TIMEOUT = 600.0

# python3 -c SCRIPT JSON: stdlib only, so they run before any release exists.
PREPARE = r"""
import grp, json, os, pwd, subprocess, sys
a = json.loads(sys.argv[1])
try:
    if pwd.getpwnam(a["user"]).pw_dir != a["home"]:
        subprocess.check_call(["usermod", "--home", a["home"], a["user"]])
except KeyError:
    subprocess.check_call(["useradd", "--system", "--user-group", "--home-dir", a["home"],
                           "--no-create-home", "--shell", "/usr/sbin/nologin", a["user"]])
for path, mode, user, group in a["dirs"]:
    os.makedirs(path, exist_ok=True)
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)
"""
FINALIZE = r"""
import grp, json, os, pwd, sys
a = json.loads(sys.argv[1])
for path, mode, user, group in a["files"]:
    tmp = path + a["tmp"]
    os.chown(tmp, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(tmp, mode)
    if os.path.exists(path):
        os.replace(path, path + a["backup"])
    else:
        open(path + a["backup"] + "-none", "w").close()
    os.replace(tmp, path)
"""
RESTORE = r"""
import json, os, sys
a = json.loads(sys.argv[1])
for path in a["files"]:
    if os.path.exists(path + a["backup"]):
        os.replace(path + a["backup"], path)
    elif os.path.exists(path + a["backup"] + "-none"):
        os.remove(path + a["backup"] + "-none")
        if os.path.exists(path):
            os.remove(path)
"""
DISCARD = r"""
import json, os, sys
a = json.loads(sys.argv[1])
for path in a["files"]:
    for old in (path + a["backup"], path + a["backup"] + "-none"):
        if os.path.exists(old):
            os.remove(old)
"""
SWITCH = r"""
import json, os, sys
a = json.loads(sys.argv[1])
old = os.readlink(a["current"]) if os.path.islink(a["current"]) else None
def link(target, name):
    os.symlink(target, name + ".tmp")
    os.replace(name + ".tmp", name)
if old and os.path.basename(old.rstrip("/")) != os.path.basename(a["target"]):
    link(old, a["previous"])
link(a["target"], a["current"])
"""
PRUNE = r"""
import json, os, shutil, sys
a = json.loads(sys.argv[1])
for r in a["releases"]:
    shutil.rmtree(os.path.join(a["root"], r), ignore_errors=True)
for w in a["wheels"]:
    path = os.path.join(a["wheel_dir"], w)
    if os.path.exists(path):
        os.remove(path)
"""

# Wheels arrive as one tar stream on standard input (cluster.transport.openssh.feed): each
# member a file named in the manifest, written beside its final name, checked against its
# sha256 and renamed into place (other hard links to an older file keep its bytes); anything
# else, a repeat or a missing wheel stops the run with the reason.
RECEIVE_WHEELS = r"""
import hashlib, json, os, sys, tarfile
a = json.loads(sys.argv[1])
os.umask(0o022)
want, seen = a["wheels"], set()
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
    for m in archive:
        if m.name not in want or m.name in seen or not m.isfile():
            sys.exit("refusing member %r" % m.name)
        source, part = archive.extractfile(m), os.path.join(a["dir"], m.name + a["part"])
        digest = hashlib.sha256()
        with open(part, "wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != want[m.name]:
            os.remove(part)
            sys.exit("%s: sha256 %s, expected %s" % (m.name, digest.hexdigest(), want[m.name]))
        os.replace(part, os.path.join(a["dir"], m.name))
        seen.add(m.name)
missing = sorted(set(want) - seen)
if missing:
    sys.exit("the stream ended without %s" % ", ".join(missing))
"""

# The pinned Claude Code CLI: the tarball, arriving on standard input, is checked against its
# checksum as it is written beside the CLI root, unpacked beside its final name and renamed
# into place with the mark last (only complete installs count), then removed. Members are
# checked: relative, no "..", files, dirs and links only.
CLI_INSTALL = r"""
import hashlib, json, os, shutil, sys, tarfile
a = json.loads(sys.argv[1])
os.umask(0o022)
digest = hashlib.sha256()
with open(a["upload"], "wb") as f:
    for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
        digest.update(chunk)
        f.write(chunk)
if digest.hexdigest() != a["sha256"]:
    os.remove(a["upload"])
    sys.exit("%s: sha256 %s, expected %s" % (a["upload"], digest.hexdigest(), a["sha256"]))
target = os.path.join(a["root"], a["name"])
scratch = os.path.join(a["root"], "." + a["name"] + ".tmp")
for old in (scratch, target):
    shutil.rmtree(old, ignore_errors=True)
with tarfile.open(a["upload"], "r:gz") as archive:
    members = archive.getmembers()
    for m in members:
        parts = m.name.split("/")
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir() or m.issym()):
            sys.exit("%s: refusing member %r" % (a["upload"], m.name))
        if m.issym() and (m.linkname.startswith("/") or
                          os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname))
                          .startswith("..")):
            sys.exit("%s: refusing link %r -> %r" % (a["upload"], m.name, m.linkname))
    if hasattr(tarfile, "data_filter"):
        archive.extractall(scratch, members, filter="data")
    else:
        archive.extractall(scratch, members)
with open(os.path.join(scratch, a["mark"]), "w") as out:
    out.write(a["sha256"] + "\n")
os.rename(scratch, target)
os.remove(a["upload"])
"""
# A release's claude-code link: to the CLI directory ``name``, or removed (None).
CLI_LINK = r"""
import json, os, sys
a = json.loads(sys.argv[1])
if a["name"] is None:
    if os.path.islink(a["link"]):
        os.remove(a["link"])
else:
    os.symlink(os.path.join(a["root"], a["name"]), a["link"] + ".tmp")
    os.replace(a["link"] + ".tmp", a["link"])
"""
CLI_PRUNE = r"""
import json, os, shutil, sys
a = json.loads(sys.argv[1])
for name in a["names"]:
    shutil.rmtree(os.path.join(a["root"], name), ignore_errors=True)
"""


@dataclass
class HostOps:
    """One host's connection and the operations deploy needs; never shared across threads."""

    name: str
    conn: Any  # a transport connection, opaque here
    target: SshTarget | None = None  # the same host for ``ssh``: pushes stream over it

    def sh(self, argv: list[str], timeout: float = 120.0) -> str:
        return run(self.conn, argv, timeout=timeout)[1]

    def script(self, body: str, args: dict[str, Any], timeout: float = 120.0) -> None:
        self.sh(["python3", "-c", body, json.dumps(args)], timeout=timeout)

    def facts(self, files: tuple[str, ...], dirs: tuple[str, ...]) -> HostFacts:
        def run_argv(argv: list[str]) -> tuple[int, str, str]:
            return run(self.conn, argv, check=False, timeout=60.0)

        return gather_facts(run_argv, self.name, argv=probe_argv(files, dirs))

    def prepare(self, dirs: Sequence[DirSpec]) -> None:
        rows = [[d.path, d.mode, d.owner, d.group] for d in dirs]
        self.script(
            PREPARE, {"user": layout.SERVICE_USER, "home": str(layout.STATE_DIR), "dirs": rows}
        )

    def push_wheels(self, directory: Path, wheels: Mapping[str, str]) -> None:
        """Send ``wheels`` (name -> sha256, files in ``directory``) as one stream over ``ssh``
        (cluster.transport.openssh: no paramiko packets under the GIL); RECEIVE_WHEELS checks
        and places each."""
        if not wheels:
            return
        args = {"wheels": dict(wheels), "dir": str(layout.WHEELS), "part": PART_SUFFIX}
        names = sorted(wheels)

        def write(stream: IO[bytes]) -> None:
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                for name in names:
                    archive.add(str(directory / name), arcname=name, recursive=False)

        self.stream(["python3", "-c", RECEIVE_WHEELS, json.dumps(args)], write)

    def install(self, release: str, wheels: Sequence[str], in_place: Collection[str]) -> None:
        """Fill a fresh ``releases/<release>/venv`` with ``wheels`` (installer.INSTALL)."""
        args = install_args(release, wheels, INSTALLED_MARK, in_place)
        self.script(INSTALL, args, INSTALL_TIMEOUT)

    def push_cli(self, pack: CliPack) -> None:
        """Stream the CLI tarball over ``ssh`` into CLI_ROOT/<version>-<sha12> (CLI_INSTALL)."""
        upload = f"{layout.CLI_ROOT}/.{pack.name}"
        self.sh(["mkdir", "-p", "-m", "0755", str(layout.CLI_ROOT)])
        args = {"upload": upload, "sha256": pack.sha256, "root": str(layout.CLI_ROOT),
                "name": pack.install_name, "mark": INSTALLED_MARK}  # fmt: skip

        def write(stream: IO[bytes]) -> None:
            with pack.path.open("rb") as source:
                shutil.copyfileobj(source, stream, 1 << 20)

        self.stream(["python3", "-c", CLI_INSTALL, json.dumps(args)], write)

    def stream(self, argv: list[str], write: Callable[[IO[bytes]], object]) -> None:
        """Run ``argv`` with ``write`` filling its standard input, over ``ssh`` to ``target``."""
        if self.target is None:
            raise ConfigError(f"{self.name}: streaming needs the host's ssh target")
        feed(self.target, argv, write, INSTALL_TIMEOUT)

    def link_cli(self, release: str, name: str | None) -> None:
        """Point ``release``'s claude-code link at CLI_ROOT/``name`` (None: remove it)."""
        link = str(layout.RELEASES / release / layout.CLI_LINK)
        self.script(CLI_LINK, {"link": link, "root": str(layout.CLI_ROOT), "name": name})

    def prune_cli(self, names: Sequence[str]) -> None:
        self.script(CLI_PRUNE, {"names": list(names), "root": str(layout.CLI_ROOT)})

    def cli_version(self, binary: str = str(layout.CLI_BINARY)) -> str:
        """The first word ``binary --version`` prints (``2.1.332``); HostError if it fails."""
        out = run(self.conn, [binary, "--version"], timeout=60.0)[1].split()
        return out[0] if out else ""

    def switch(self, release: str) -> None:
        self.script(
            SWITCH,
            {
                "current": str(layout.CURRENT),
                "previous": str(layout.PREVIOUS),
                "target": str(layout.RELEASES / release),
            },
        )

    def write(self, files: Sequence[FileSpec]) -> None:
        """Stage each file (mode 0600 from its first byte), then chown, chmod, back up, rename."""
        for spec in files:
            put_bytes(self.conn, spec.path + TMP_SUFFIX, spec.body.reveal().encode(), 0o600)
        rows = [[f.path, f.mode, f.owner, f.group] for f in files]
        self.script(FINALIZE, {"files": rows, "tmp": TMP_SUFFIX, "backup": BACKUP_SUFFIX})

    def restore(self, paths: Sequence[str]) -> None:
        self.script(RESTORE, {"files": list(paths), "backup": BACKUP_SUFFIX})

    def discard_backups(self, paths: Sequence[str]) -> None:
        """Forget what ``restore`` would put back: the run succeeded (old secrets go too)."""
        self.script(DISCARD, {"files": list(paths), "backup": BACKUP_SUFFIX})

    def prune(self, releases: Sequence[str], wheels: Sequence[str]) -> None:
        self.script(
            PRUNE,
            {
                "releases": list(releases),
                "root": str(layout.RELEASES),
                "wheels": list(wheels),
                "wheel_dir": str(layout.WHEELS),
            },
        )

    def systemctl(self, *args: str) -> None:
        self.sh(["systemctl", *args], timeout=120.0)

    def unit_state(self) -> tuple[str, int]:
        out = self.sh(["systemctl", "show", layout.UNIT_NAME, "-p", "ActiveState,MainPID"])
        seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return seen.get("ActiveState", ""), int(seen.get("MainPID", "0") or 0)

    def journal(self, lines: int = 8) -> str:
        argv = ["journalctl", "-u", layout.UNIT_NAME, "-n", str(lines), "--no-pager", "-o", "cat"]
        code, out, _ = run(self.conn, argv, check=False, timeout=30.0)
        return out.strip() if code == 0 else ""

    def read(self, path: str) -> bytes | None:
        return get_bytes(self.conn, path)
