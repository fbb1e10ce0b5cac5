"""Session fixtures for integration tests: a docker engine and three real SSH test hosts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testhosts import faults
from cluster.testhosts.hosts import down, up
from cluster.testhosts.model import HostRecord, HostSet

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ccc-it"  # not `invoke testhosts.up`'s prefix: a test run leaves those hosts alone
COUNT = 3


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Start dockerd if needed (scripts/ensure-docker.sh polls it with a deadline)."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-docker.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"no docker engine (ensure-docker.sh exit {done.returncode}):\n{done.stderr}")


@pytest.fixture(scope="session")
def testhosts(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSet]:
    """Three fresh hosts for the whole session, removed at its end even if a test fails.

    Tests that break a host (stop, new host key) restore it before they return.
    """
    state_dir = tmp_path_factory.mktemp("testhosts")
    try:
        yield up(COUNT, PREFIX, state_dir)
    finally:
        down(PREFIX)


@pytest.fixture
def rekeyed_host(testhosts: HostSet) -> Iterator[HostRecord]:
    """The last host with a new host key; trusted again afterwards for the tests that follow."""
    host = testhosts.hosts[-1]
    faults.regenerate_host_key(host.name)
    try:
        yield host
    finally:
        faults.trust_current_host_key(host.name, testhosts.paths.known_hosts)
