"""Where the state repo lives (path, file://, ssh://, scp-like) and how to bundle it from there.

A repo on another host is bundled *on that host* (a snapshot of its refs, then ``git bundle
create --all`` of it, as ``bundle.snapshot_argvs`` says, over cluster.transport, host key
checked against known_hosts) and the one file is downloaded over SFTP: nothing but git is
needed there, and the SSH trust is the same as deploy's. Any other URL (https://) is mirrored
with ``git clone --mirror`` (every ref) and bundled here.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cluster.backup import bundle
from cluster.backup.errors import BackupError
from cluster.state.gitcmd import run_git
from cluster.transport import connect, get_bytes, run

_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\s]+)$")


@dataclass(frozen=True)
class LocalRepo:
    path: Path


@dataclass(frozen=True)
class SshRepo:
    user: str
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class OtherUrl:
    url: str


StateSource = LocalRepo | SshRepo | OtherUrl


def parse_state(url: str) -> StateSource:
    """Classify ``url``; a password in it is refused (secrets never enter a backup)."""
    scp = _SCP_LIKE.match(url)
    if scp and "://" not in url:
        return SshRepo(scp["user"], scp["host"], 22, scp["path"])
    if "://" not in url:
        return LocalRepo(Path(url).expanduser().resolve())
    parts = urlsplit(url)
    if parts.password is not None:
        raise BackupError("the state URL carries a password: pass credentials another way")
    if parts.scheme == "file":
        return LocalRepo(Path(parts.path).resolve())
    if parts.scheme == "ssh":
        if not parts.hostname or not parts.username or not parts.path:
            raise BackupError(f"{url}: an ssh:// state URL needs user@host and a path")
        return SshRepo(parts.username, parts.hostname, parts.port or 22, parts.path)
    return OtherUrl(url)


def write_bundle(source: StateSource, target: Path, key: Path | None = None,
                 known_hosts: Path | None = None, timeout: float = 10.0) -> None:
    """Write a bundle of every ref of ``source`` to ``target``."""
    if isinstance(source, LocalRepo):
        bundle.create_local(source.path, target)
    elif isinstance(source, SshRepo):
        if key is None or known_hosts is None:
            raise BackupError(f"{source}: needs an SSH key and a known_hosts file")
        _remote_bundle(source, target, key, known_hosts, timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="ccc-mirror-") as scratch:
            mirror = Path(scratch) / "mirror.git"
            run_git(["clone", "--quiet", "--mirror", source.url, str(mirror)],
                    timeout=bundle.BUNDLE_TIMEOUT)  # fmt: skip
            # The mirror is already a snapshot (one ref advertisement): bundled as it is.
            run_git(bundle.bundle_argv(str(mirror), str(target)), timeout=bundle.BUNDLE_TIMEOUT)


def _remote_bundle(repo: SshRepo, target: Path, key: Path, known: Path, timeout: float) -> None:
    with connect(repo.host, repo.port, repo.user, key, known, timeout=timeout) as conn:
        scratch = run(conn, ["mktemp", "-d", "-t", "ccc-backup.XXXXXXXX"])[1].strip()
        remote_file = f"{scratch}/state.bundle"
        try:
            for argv in bundle.snapshot_argvs(repo.path, scratch, remote_file):
                run(conn, ["git", *argv], timeout=bundle.BUNDLE_TIMEOUT)
            expected = run(conn, ["sha256sum", remote_file])[1].split()[0]
            data = get_bytes(conn, remote_file)
        finally:
            run(conn, ["rm", "-rf", "--", scratch], check=False)
    if data is None:
        raise BackupError(f"{repo}: the bundle vanished before it was downloaded")
    if hashlib.sha256(data).hexdigest() != expected:
        raise BackupError(f"{repo}: the downloaded bundle differs from the one on the host")
    target.write_bytes(data)
