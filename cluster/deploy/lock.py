"""The deploy lock: one deploy or rollback at a time per control directory, holder named."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from cluster.errors import ClusterError


class DeployLocked(ClusterError):
    """Another deploy holds the lock; the message names its pid, host, user and start."""


@contextmanager
def deploy_lock(path: Path, what: str = "deploy") -> Iterator[None]:
    """Hold ``path`` (an OS file lock: released when the holder exits, even by SIGKILL).

    It serialises operators who share this control directory (the inventory's checkout or a
    shared admin host); two copies of the project on two machines are not covered.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = path.with_name(path.name + ".holder")
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DeployLocked(f"another {describe(holder)}; try again when it ends") from None
    try:
        info = {"what": what, "pid": os.getpid(), "host": socket.gethostname(),
                "user": _user(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
        tmp = holder.with_name(holder.name + ".tmp")
        tmp.write_text(json.dumps(info) + "\n")
        tmp.replace(holder)
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def describe(holder: Path) -> str:
    try:
        info = json.loads(holder.read_text())
    except (OSError, ValueError):
        return "deploy holds the lock (holder unknown)"
    return (f"{info.get('what', 'deploy')} holds the lock: pid {info.get('pid')} on "
            f"{info.get('host')} (user {info.get('user')}) since {info.get('since')}")  # fmt: skip


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
