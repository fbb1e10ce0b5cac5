"""Chaos fixtures: four agent hosts and a state host (ccc-chaos*), and one faulted run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.chaos.bed import Bed, chaos_bed
from cluster.chaos.workload import Outcome, Scenario, run_scenario

ROOT = Path(__file__).resolve().parents[2]
HOSTS = 4
SCENARIO = Scenario(tasks=100, batches=4, seed=7, fault_seconds=60.0, faults=12)


@pytest.fixture(scope="session")
def chaos_docker() -> None:
    """Start dockerd if needed (scripts/ensure-docker.sh polls it with a deadline)."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"no docker engine (ensure-docker.sh exit {done.returncode}):\n{done.stderr}")


@pytest.fixture(scope="session")
def chaos_hosts(chaos_docker: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """Agents deployed on fresh hosts with 6 s leases; hosts removed at the end."""
    with chaos_bed(tmp_path_factory.mktemp("chaos"), HOSTS) as bed:
        yield bed


@pytest.fixture(scope="session")
def chaos_run(chaos_hosts: Bed) -> Outcome:
    """One run of the seeded scenario: 100 tasks in 4 batches under 12 faults."""
    return run_scenario(chaos_hosts, SCENARIO)
