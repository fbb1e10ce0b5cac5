"""The chaos test bed: agent hosts and a state host, with agents deployed on short leases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from cluster.deploy.run import run
from cluster.errors import ClusterError, HostError
from cluster.testhosts import bed as testbed
from cluster.testhosts.bed import freeze_source
from cluster.testhosts.hosts import down, up
from cluster.testhosts.model import HostSet
from cluster.testhosts.statehost import StateHost, start_state_host

PREFIX = "ccc-chaos"
STATE_PREFIX = "ccc-chaos-state"
LEASE = 6.0
HEARTBEAT = 2.0  # = lease / 3: agents renew no more often than that anyway
# Short leases so that takeovers happen within the run; a short stop grace so that a reboot
# (SIGTERM from systemd) releases quickly instead of running into docker's stop timeout.
AGENT = {"runner": "scratch", "heartbeat_seconds": HEARTBEAT, "poll_seconds": 1.0,
         "lease_seconds": LEASE, "stop_grace_seconds": 3.0}  # fmt: skip
MAX_TASKS = 2


@dataclass(frozen=True)
class Bed:
    hosts: HostSet
    state: StateHost
    work: Path

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts.hosts]

    @property
    def lease(self) -> float:
        return LEASE


@contextmanager
def chaos_bed(root: Path, count: int, keep: bool = False) -> Iterator[Bed]:
    """``count`` agent hosts and a state host, agents deployed and verified; removed after."""
    try:
        state = start_state_host(root / "state", prefix=STATE_PREFIX)
        hosts = _up(count, root / "hosts")
        bed = Bed(hosts, state, root / "work")
        deploy(bed, freeze_source(Path(__file__).resolve().parents[2], root / "source"))
        yield bed
    finally:
        if not keep:
            down(PREFIX)
            down(STATE_PREFIX)


def _up(count: int, state_dir: Path) -> HostSet:
    """``up`` with one more try: on this shared machine a fresh container now and then exits
    during boot (seen once); a second failure is loud."""
    try:
        return up(count, PREFIX, state_dir, say=lambda _: None)
    except HostError:
        return up(count, PREFIX, state_dir, say=lambda _: None)


def deploy(bed: Bed, source: Path) -> None:
    inventory = bed.work / "inventory"
    data = {name: {"max_tasks": MAX_TASKS} for name in bed.names}
    testbed.write_inventory(inventory, bed.hosts, bed.state, data)
    settings = testbed.testbed_settings(source, inventory, bed.work, bed.state, agent=AGENT,
                                        verify_timeout=120.0)  # fmt: skip
    outcomes = run(settings, Console(width=160, force_terminal=False, quiet=True),
                   environ=testbed.SECRETS)  # fmt: skip
    failed = {o.host: o.reason for o in outcomes if o.failed}
    if failed:
        raise ClusterError(f"chaos bed: deploy failed: {failed}")


