"""Agents' heartbeats (refs/agents/<id>) as deploy verification polls them from the control host."""

from __future__ import annotations

import shlex
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

from cluster.state.records import Heartbeat
from cluster.state.remote import AGENT_REFS, StateRemote
from cluster.state.snapshot import Reader

MIN_INTERVAL = 0.5  # threads polling together share one read per interval


def multiplexed(ssh_command: str, socket_dir: str) -> str:
    """``ssh_command`` reusing one connection: a read twice a second costs no handshake."""
    if shlex.split(ssh_command)[:1] != ["ssh"]:
        return ssh_command
    return (f"{ssh_command} -o ControlMaster=auto -o ControlPath={socket_dir}/%C "
            "-o ControlPersist=15")  # fmt: skip


class HeartbeatReader:
    """The state repo's reader (``StateRemote`` + ``Reader``) on the agents' refs alone: one
    fetch of the heartbeats per interval however many hosts are being verified, never main's
    tree nor the claims. Its mirror is ``work_dir/heartbeats``'s.

    Thread-safe: verification threads share it, git runs under a lock.
    """

    def __init__(self, url: str, work_dir: Path, ssh_command: str | None = None) -> None:
        self.url = url
        self.work_dir = work_dir / "heartbeats"
        self._sockets = tempfile.mkdtemp(prefix="ccc-hb-")  # short: a socket path has <108 bytes
        weakref.finalize(self, shutil.rmtree, self._sockets, True)
        command = multiplexed(ssh_command, self._sockets) if ssh_command else None
        self.env = {"GIT_SSH_COMMAND": command} if command else None
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._beats: dict[str, Heartbeat] = {}
        self._remote: StateRemote | None = None
        self._reader: Reader | None = None

    def beat(self, agent: str) -> Heartbeat | None:
        """``agent``'s heartbeat as last read (at most ``MIN_INTERVAL`` ago); ClusterError
        when the state repo cannot be read."""
        with self._lock:
            if time.monotonic() - self._read_at >= MIN_INTERVAL:
                self._beats = self._read()
                self._read_at = time.monotonic()
            return self._beats.get(agent)

    def _read(self) -> dict[str, Heartbeat]:
        if self._remote is None or self._reader is None:  # opened on first use: a mirror
            self._remote = StateRemote(self.url, self.work_dir, self.env)  # only when polled
            weakref.finalize(self, self._remote.close)
            self._reader = Reader(self._remote.store)
        return self._reader.read_agents(self._remote.refs(AGENT_REFS))

    @property
    def mirror(self) -> Path | None:
        """Where the heartbeats are read (None before the first read)."""
        return None if self._remote is None else self._remote.mirror
