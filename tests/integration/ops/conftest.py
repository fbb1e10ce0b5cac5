"""Fixtures for ops tests: three real hosts and a state host, all named ccc-ops*."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster.deploy.settings import DeploySettings
from cluster.health.gather import HealthSettings, check_fleet
from cluster.health.model import FleetHealth
from cluster.testhosts import bed as testbed
from cluster.testhosts.bed import AGENT, freeze_source, testbed_settings
from cluster.testhosts.hosts import down, up
from cluster.testhosts.model import HostSet
from cluster.testhosts.statehost import StateHost, start_state_host
from cluster.transport import docker
from tests.helpers import poll

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "ccc-ops"  # not ccc-it, ccc-deploy nor invoke's ccc-host
STATE_PREFIX = "ccc-ops-state"
COUNT = 3
METRICS_PORT = 9464
WHEELS = ROOT / ".cluster" / "ops-wheels"  # kept between runs: wheels are built once per source


@dataclass
class OpsEnv:
    hosts: HostSet
    state: StateHost
    inventory: Path
    work: Path
    source: Path

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts.hosts]

    def settings(self, **overrides: Any) -> DeploySettings:
        agent = {**AGENT, "metrics_port": METRICS_PORT}
        return testbed_settings(self.source, self.inventory, self.work, self.state,
                                agent=agent, **overrides)  # fmt: skip

    def health_settings(self) -> HealthSettings:
        return HealthSettings(inventory=self.inventory, work_dir=self.work, root=self.source,
                              state_url=self.state.control_url,
                              state_ssh_command=self.state.control_ssh_command)  # fmt: skip

    def health(self) -> FleetHealth:
        return check_fleet(self.health_settings())

    def wait_health(self, ok: Callable[[FleetHealth], bool], timeout: float = 90.0) -> FleetHealth:
        """Re-check until ``ok`` holds; fail loudly with the last verdict at the deadline."""
        seen: list[FleetHealth] = []

        def matched() -> FleetHealth | None:
            seen[:] = [self.health()]
            return seen[-1] if ok(seen[-1]) else None

        def last() -> str:
            details = {h.name: [f.text for f in h.findings] for h in seen[-1].hosts}
            return f"health to match (last: {seen[-1].verdict} {details})"

        fleet: FleetHealth = poll(matched, timeout, last, interval=0.5)
        return fleet

    def exec(self, host: str, argv: list[str]) -> tuple[int, str, str]:
        return docker.exec_argv(docker.get(docker.client(), host), argv)


@pytest.fixture(scope="session")
def ops_env(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsEnv]:
    """Three fresh hosts (only the first in the inventory at first) and a state host."""
    base = tmp_path_factory.mktemp("ops")
    try:
        state = start_state_host(base / "state", STATE_PREFIX)
        hosts = up(COUNT, PREFIX, base / "hosts", say=lambda _: None)
        source = freeze_source(ROOT, base / "source")
        work = base / "work"
        work.mkdir()
        WHEELS.mkdir(parents=True, exist_ok=True)
        (work / "wheels").symlink_to(WHEELS, target_is_directory=True)
        first = HostSet(hosts.name_prefix, hosts.hosts[:1], hosts.paths)
        testbed.write_inventory(base / "inventory", first, state)
        yield OpsEnv(hosts, state, base / "inventory", work, source)
    finally:
        down(PREFIX)
        down(STATE_PREFIX)


@pytest.fixture(scope="session")
def deployed(ops_env: OpsEnv) -> OpsEnv:
    """The first host deployed (the fleet an operator adds agents to)."""
    from cluster.deploy.run import run
    from cluster.testhosts.bed import SECRETS

    outcomes = run(ops_env.settings(), environ=SECRETS)
    failed = {o.host: o.reason for o in outcomes if o.failed}
    assert not failed, failed
    return ops_env


