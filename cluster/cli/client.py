"""The state client a ``claude-cluster`` command works through, kept in its own work dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.layers import USER_WORK_DIR
from cluster.state.ids import is_safe_id

if TYPE_CHECKING:
    from cluster.state.client import StateClient


def work_dir(command: str) -> Path:
    """``$CLUSTER_WORKDIR/<command>``, by default under the user's work dir."""
    base = os.environ.get("CLUSTER_WORKDIR") or USER_WORK_DIR.expanduser()
    return Path(base) / command


def open_client(url: str, command: str, fallback: str, name: str = "") -> StateClient:
    """A client of the state repo at ``url``, checked to be reachable, committing as
    ``$CLUSTER_OPERATOR``, else ``name``, else (or when that is no safe id) ``fallback``."""
    from cluster.state.client import Identity, StateClient

    who = os.environ.get("CLUSTER_OPERATOR") or name or fallback
    client = StateClient(url, work_dir(command), Identity(who if is_safe_id(who) else fallback))
    client.remote.check()
    return client


@contextmanager
def state_client(url: str, command: str, fallback: str, name: str = "") -> Iterator[StateClient]:
    """:func:`open_client`, closed when the block ends."""
    client = open_client(url, command, fallback, name)
    try:
        yield client
    finally:
        client.close()
