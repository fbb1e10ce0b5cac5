"""Ref locks left behind by git writers that died mid-transaction, and clearing them.

git takes ``<ref>.lock`` (and ``packed-refs.lock`` to delete a ref) with O_EXCL, writes the
new value into it and renames it over the ref. A writer that dies between the two (killed,
out of memory, power lost, its repository moved away under it) leaves the lock behind, and
every later write of that ref fails with "Unable to create '<ref>.lock': File exists": git
never removes it. A ref transaction holds its locks for milliseconds, so a lock file older
than ``STALE_LOCK_SECONDS`` has no live writer. Whoever can reach the repository's files
(an agent on a local path or a ``file://`` URL, the server's pre-receive hook) clears such a
lock and writes again; a lock younger than that is left to its writer.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

STALE_LOCK_SECONDS = 30.0
LOCK_SUFFIX = ".lock"
_HELD = re.compile(r"Unable to create '([^'\n]+\.lock)': File exists")


def locks_named(stderr: str) -> list[Path]:
    """The lock files git says it found held in ``stderr`` (its own or a remote's)."""
    return [Path(p) for p in dict.fromkeys(_HELD.findall(stderr))]


def inside(lock: Path, git_dir: Path) -> bool:
    """Is ``lock`` a file of the repository at ``git_dir`` (paths as git printed them)?"""
    real = Path(os.path.realpath(lock.parent)) / lock.name
    return real.is_relative_to(os.path.realpath(git_dir))


def clear_if_stale(lock: Path, min_age: float = STALE_LOCK_SECONDS) -> bool:
    """Remove ``lock`` when it was last written ``min_age`` seconds ago or earlier.

    True when this call removed it. The lock is first renamed aside (to a name git ignores)
    and removed only if the file moved is the one judged stale: a live writer's lock that
    replaced it in between is put back.
    """
    try:
        seen = lock.stat()
    except FileNotFoundError:
        return False  # its writer finished
    if time.time() - seen.st_mtime < min_age:
        return False
    stem = lock.name.removesuffix(LOCK_SUFFIX)
    aside = lock.with_name(f"{stem}.stale-{os.getpid()}-{os.urandom(4).hex()}{LOCK_SUFFIX}")
    try:
        lock.rename(aside)
    except FileNotFoundError:
        return False  # another process cleared it first
    moved = aside.stat()
    if (moved.st_ino, moved.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
        with contextlib.suppress(FileExistsError):  # a live writer's lock: put it back
            lock.hardlink_to(aside)
        aside.unlink()
        return False
    aside.unlink()
    return True


def clear_stale(locks: Iterable[Path], git_dir: Path) -> list[Path]:
    """Clear the stale ones among ``locks`` that belong to ``git_dir``; return those cleared."""
    return [lock for lock in locks
            if lock.name.endswith(LOCK_SUFFIX) and inside(lock, git_dir)
            and clear_if_stale(lock)]
