"""Verification: the unit is active and the agent's heartbeat comes from that very process."""

from __future__ import annotations

import time
from collections.abc import Callable

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.remote import HostOps
from cluster.errors import ClusterError, HostError
from cluster.state.records import Heartbeat

POLL = 0.5
Clock = Callable[[], float]


class VerifyFailed(HostError):
    """The agent did not come up (unit inactive, or no heartbeat from its process in time)."""


def beat_matches(beat: Heartbeat | None, main_pid: int, host: str) -> bool:
    """A heartbeat of the running unit: its pid is the unit's MainPID on this host name."""
    return (
        beat is not None
        and main_pid > 0
        and beat.pid == main_pid
        and beat.state in ("running", "paused")
        and (not host or beat.host == host)
    )


def verify_systemd(
    ops: HostOps,
    agent: str,
    hostname: str,
    reader: HeartbeatReader | None,
    timeout: float,
    clock: Clock = time.monotonic,
) -> str:
    """Poll until the unit is active and its heartbeat is in the state repo; say what was seen.

    Without a reader only the unit is checked (the state repo is not reachable from here).
    """
    deadline = clock() + timeout
    last = "not checked yet"
    while True:
        state, pid = ops.unit_state()
        if state == "active":
            if reader is None:
                return f"unit active (pid {pid}); heartbeat not checked"
            try:
                beat = reader.beat(agent)
            except ClusterError as exc:
                beat, last = None, f"state repo unreadable: {exc}"
            else:
                if beat_matches(beat, pid, hostname):
                    return f"unit active, heartbeat from pid {pid}"
                last = (
                    "no heartbeat yet"
                    if beat is None
                    else f"heartbeat from pid {beat.pid} ({beat.state}), unit pid {pid}"
                )
        else:
            last = f"unit {state or 'unknown'}"
        if clock() >= deadline:
            tail = ops.journal()
            detail = f"; journal: {tail.splitlines()[-1]}" if tail else ""
            raise VerifyFailed(agent, f"not verified within {timeout:.0f}s: {last}{detail}")
        time.sleep(POLL)
