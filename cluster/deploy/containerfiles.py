"""A container host's files, seen from the control host: read, written with backups, restored."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cluster.deploy.containerplan import Ownership, ownership
from cluster.deploy.image import UID
from cluster.deploy.remote import BACKUP_SUFFIX, TMP_SUFFIX
from cluster.deploy.wanted import FileSpec
from cluster.units import layout

DIRS = (*layout.WRITABLE, layout.SSH_DIR, layout.ETC)
ROOTS = {layout.SSH_DIR, layout.ETC}  # root's, the agent's group may read: 0750 root:UID


def on_host(root: Path, path: str) -> Path:
    """Where ``path`` of the container host is, seen from here (``root`` is its ``/``)."""
    return root / path.lstrip("/")


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def owner_of(path: Path) -> Ownership | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mode & 0o7777, stat.st_uid, stat.st_gid


def free_bytes(root: Path) -> int:
    """Free space where the host's files go (the nearest directory that exists)."""
    path = root
    while not path.exists() and path != path.parent:
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def read_file(root: Path, path: str) -> bytes | None:
    try:
        return on_host(root, path).read_bytes()
    except FileNotFoundError:
        return None


def write_files(root: Path, files: Sequence[FileSpec], written: list[Path]) -> None:
    """Directories, then each file: the old one kept as a backup, a temp file of its final mode
    and owner renamed over it. Each path is added to ``written`` once it is replaced."""
    for directory in DIRS:
        path = on_host(root, str(directory))
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0 if directory in ROOTS else UID, UID)
        path.chmod(0o750 if directory in ROOTS else 0o700)
    for spec in files:
        path = on_host(root, spec.path)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(spec.body.reveal().encode())
        mode, uid, gid = ownership(spec)
        os.chown(tmp, uid, gid)
        tmp.chmod(mode)
        backup = backup_of(path)
        backup.unlink(missing_ok=True)  # a crashed run's: never restored in place of this one
        if path.exists():
            os.link(path, backup)  # the old inode, mode and owner kept as they were
        tmp.replace(path)
        written.append(path)


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)  # as systemd hosts keep them


def restore_files(written: Sequence[Path]) -> None:
    """Put back the files this run wrote (a new one is removed)."""
    for path in written:
        if backup_of(path).exists():
            backup_of(path).replace(path)
        else:
            path.unlink(missing_ok=True)
