"""One agent process per agent id and work directory, for as long as it runs.

Two processes sharing a work directory would share the state mirror and the workspaces, and
each would take the other's git locks for a dead writer's. The first one holds an exclusive
``flock`` on ``<workdir>/<id>/instance.lock`` (released by the kernel when it exits, however
it exits); a second one is refused. Whatever the holder finds locked in its own mirror was
therefore left by a process that died.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from cluster.errors import ConfigError

LOCK_NAME = "instance.lock"


def hold(home: Path, agent_id: str) -> IO[str]:
    """Take the instance lock of ``home``; keep the returned file open while the agent runs."""
    home.mkdir(parents=True, exist_ok=True)
    handle = os.fdopen(os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(
            f"agent {agent_id} already runs with work directory {home} (pid {holder}); "
            "run one process per agent id and work directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
