"""The pinned Claude Code CLI, packed once per version on the control host for offline hosts.

setup.sh installs ``@anthropic-ai/claude-code`` at the pin (cluster/pins.py) with ``npm -g``.
That package's ``bin/claude.exe`` is, after its postinstall, the platform's native binary (the
same bytes as its ``node_modules/@anthropic-ai/claude-code-<platform>/claude``); nothing else
in the package is needed to run it. So the tarball holds the package without its
``node_modules`` (the duplicate binary), laid out as an npm prefix::

    bin/claude -> ../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe
    lib/node_modules/@anthropic-ai/claude-code/{package.json,bin/claude.exe,...}

Entries are sorted, owned by root, dated 0, and the gzip header carries no name or time: the
same installation packs to the same bytes and checksum. Hosts never reach a registry: deploy
uploads this file where a host lacks it and unpacks it there (cluster/deploy/remote.py), and
the agent image ``ADD``s it (cluster/deploy/image.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from cluster.deploy.wheels import BuildError
from cluster.pins import CLAUDE_CODE_VERSION

PACKAGE = "@anthropic-ai/claude-code"
PREFIX = PurePosixPath("lib") / "node_modules" / PACKAGE  # the package inside the tarball
ENTRY = PurePosixPath("bin") / "claude.exe"  # the package's bin, the native binary
LINK = PurePosixPath("bin") / "claude"
SKIP = ("node_modules",)  # the platform package: the same binary as bin/claude.exe
SIDECAR = ".json"  # <tarball>.json: version, sha256, bytes
COMPRESSLEVEL = 6  # 400 MB -> ~185 MB in ~20 s, once per version; xz -1 saved 30 MB in 80 s
VERSION_TIMEOUT = 30.0


class CliMismatch(BuildError):
    """The control host's Claude Code CLI is not the pinned one (or not there at all)."""


@dataclass(frozen=True)
class CliPack:
    """The packed CLI: a tarball in the cache with its checksum."""

    path: Path
    version: str
    sha256: str
    size: int
    built: bool  # False when the cache already held it

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def install_name(self) -> str:
        """``<version>-<sha12>``: its directory under /opt/claude-cluster/claude-code on hosts."""
        return f"{self.version}-{self.sha256[:12]}"


def platform_tag() -> str:
    """``linux-x64``, ``linux-arm64``: npm's names for this machine, as the package uses them."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)
    return f"{sys.platform}-{arch}"


def tarball_name(version: str) -> str:
    return f"claude-code-{version}-{platform_tag()}.tar.gz"


def find_package(binary: str = "claude") -> Path:
    """The npm package directory of the ``claude`` on PATH (npm links it to the package's bin)."""
    found = shutil.which(binary)
    if found is None:
        raise CliMismatch(f"no Claude Code CLI on this control host ({binary!r} is not on PATH): "
                          f"./setup.sh installs {PACKAGE}@{CLAUDE_CODE_VERSION}")  # fmt: skip
    real = Path(os.path.realpath(found))
    # bin/claude.exe of the package, or the binary of its platform package inside it
    for directory in real.parents:
        if _package_name(directory) == PACKAGE:
            return directory
    raise CliMismatch(f"{found} (really {real}) is not in an npm {PACKAGE} package: install the "
                      f"CLI with npm (./setup.sh) or set claude_code_package")  # fmt: skip


def package_version(package: Path) -> str:
    """The version in the package's package.json; CliMismatch when it is not the CLI's."""
    name = _package_name(package)
    if name != PACKAGE:
        raise CliMismatch(f"{package} is not the {PACKAGE} package (package.json: {name!r})")
    return str(json.loads((package / "package.json").read_text(encoding="utf-8"))["version"])


def binary_version(binary: Path) -> str:
    """What ``<binary> --version`` says, its first word (``2.1.332 (Claude Code)``)."""
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=VERSION_TIMEOUT,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliMismatch(f"{binary} --version did not run: {exc}") from exc
    words = done.stdout.split()
    if done.returncode != 0 or not words:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or "(no output)"
        raise CliMismatch(f"{binary} --version exited {done.returncode}: {tail}")
    return words[0]


def pack_cli(
    cache_root: Path, package: Path | None = None, version: str = CLAUDE_CODE_VERSION
) -> CliPack:
    """The tarball of the pinned CLI in ``cache_root``, packed from ``package`` when missing.

    ``package`` defaults to the package of the ``claude`` on PATH. A cached tarball of the
    pinned version is used as it is; packing refuses (CliMismatch) a package of another
    version, or whose binary says another version (a placeholder left by a failed postinstall).
    """
    final = cache_root / tarball_name(version)
    cache_root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_root / ".lock")):
        cached = _read_sidecar(final, version)
        if cached is not None:
            return cached
        package = package or find_package()
        found = package_version(package)
        if found != version:
            raise CliMismatch(f"the control host has {PACKAGE} {found} ({package}), deploy ships "
                              f"the pinned {version} (cluster/pins.py): run ./setup.sh to "
                              f"install the pin, or change the pin")  # fmt: skip
        said = binary_version(package / ENTRY)
        if said != version:
            raise CliMismatch(f"{package / ENTRY} --version says {said}, not the pinned {version}"
                              f": reinstall it (./setup.sh)")  # fmt: skip
        scratch = final.with_name(f".{final.name}.tmp")
        write_tarball(package, scratch)
        digest, size = file_sha256(scratch), scratch.stat().st_size
        body = {"version": version, "sha256": digest, "bytes": size}
        sidecar = final.with_name(final.name + SIDECAR)
        sidecar.unlink(missing_ok=True)  # no sidecar naming a tarball being replaced
        scratch.replace(final)
        tmp = sidecar.with_name(f".{sidecar.name}.tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        tmp.replace(sidecar)
    return CliPack(final, version, digest, size, built=True)


def write_tarball(package: Path, target: Path) -> None:
    """The package (less ``node_modules``) under PREFIX, and the ``bin/claude`` link."""
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                      compresslevel=COMPRESSLEVEL) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):  # fmt: skip
        for directory in ("bin", "lib", "lib/node_modules", str(PREFIX.parent)):
            archive.addfile(_info(directory, tarfile.DIRTYPE, 0o755))
        link = _info(str(LINK), tarfile.SYMTYPE, 0o777)
        link.linkname = str(PurePosixPath("..") / PREFIX / ENTRY)
        archive.addfile(link)
        for path in _package_files(package):
            rel = path.relative_to(package).as_posix()
            name = str(PREFIX / rel) if rel != "." else str(PREFIX)
            if path.is_dir():
                archive.addfile(_info(name, tarfile.DIRTYPE, 0o755))
                continue
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info = _info(name, tarfile.REGTYPE, mode)
            info.size = path.stat().st_size
            with path.open("rb") as handle:
                archive.addfile(info, handle)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _package_files(package: Path) -> Iterator[Path]:
    """The package directory and everything in it but SKIP, sorted; symlinks are refused."""
    yield package
    for root, dirs, files in os.walk(package):
        here = Path(root)
        if here == package:
            dirs[:] = [d for d in dirs if d not in SKIP]
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = here / name
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise BuildError(f"{path}: not a plain file or directory, refusing to pack it")
        for name in sorted(files):
            yield here / name
        for name in dirs:  # os.walk visits each later, in this order: parents come first
            yield here / name


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _package_name(directory: Path) -> str:
    try:
        body = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(body.get("name", "")) if isinstance(body, dict) else ""


def _read_sidecar(tarball: Path, version: str) -> CliPack | None:
    """The cached pack when its sidecar names this version and the tarball's size matches."""
    try:
        body = json.loads(tarball.with_name(tarball.name + SIDECAR).read_text())
        size = tarball.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("version") != version:
        return None
    digest = body.get("sha256")
    if body.get("bytes") != size or not isinstance(digest, str) or len(digest) != 64:
        return None
    return CliPack(tarball, version, digest, size, built=False)
