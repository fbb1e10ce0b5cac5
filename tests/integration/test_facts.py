"""Facts read from real test hosts over verified SSH, and preflight's verdict on them."""

from __future__ import annotations

import socket

import pytest

from cluster.deploy.facts import HostFacts, read_facts
from cluster.deploy.preflight import preflight
from cluster.errors import HostError
from cluster.inventory.model import Thresholds
from cluster.testhosts.model import HostRecord, HostSet

pytestmark = pytest.mark.integration

LOWERED = Thresholds(min_cpus=1, min_memory_gb=0.5, min_disk_gb=1, max_clock_skew_s=5)


def _facts(hosts: HostSet, host: HostRecord) -> HostFacts:
    paths = hosts.paths
    # A generous connect timeout: a shared 2-core machine can be very busy.
    return read_facts("127.0.0.1", host.port, "root", paths.private_key, paths.known_hosts,
                      timeout=30.0, name=host.name)  # fmt: skip


@pytest.fixture(scope="module")
def facts(testhosts: HostSet) -> list[HostFacts]:
    return [_facts(testhosts, host) for host in testhosts.hosts]


def test_facts_are_read_from_every_host(testhosts: HostSet, facts: list[HostFacts]) -> None:
    assert [f.host for f in facts] == [h.name for h in testhosts.hosts]
    for fact in facts:
        assert fact.systemd, f"{fact.host}: pid1={fact.pid1!r} booted={fact.systemd_booted}"
        assert fact.python is not None and fact.python >= (3, 11)
        assert fact.venv
        assert fact.cpus >= 1
        assert fact.memory_bytes > 0
        assert fact.disk_free_bytes > 0
        assert abs(fact.clock_skew_s) <= 5 + fact.clock_uncertainty_s  # same kernel clock
        # A host nothing was deployed to yet: no release, no unit, no wheels.
        assert (fact.releases, fact.current, fact.wheels) == ((), None, {})
        assert set(fact.files.values()) == {None}


def test_default_thresholds_report_the_shortfall_clearly(facts: list[HostFacts]) -> None:
    defaults = Thresholds()
    for fact in facts:
        checks = {p.check: str(p) for p in preflight(fact, defaults)}
        if fact.cpus < defaults.min_cpus:  # these containers see the machine's 2 CPUs
            assert checks["cpus"].startswith(
                f"{fact.host}: cpus: {fact.cpus} CPUs, need at least 4"
            )
            assert "lower min_cpus" in checks["cpus"]
        if fact.memory_gb < defaults.min_memory_gb:
            assert "lower min_memory_gb" in checks["memory"]
        assert set(checks) <= {"cpus", "memory", "disk"}, checks


def test_thresholds_above_the_host_name_each_resource(facts: list[HostFacts]) -> None:
    huge = Thresholds(min_cpus=10_000, min_memory_gb=1e6, min_disk_gb=1e9)
    for fact in facts:
        messages = {p.check: p.message for p in preflight(fact, huge)}
        assert set(messages) == {"cpus", "memory", "disk"}
        assert messages["memory"].startswith(f"{fact.memory_gb:.1f} GB of memory, need")


def test_lowered_thresholds_pass(facts: list[HostFacts]) -> None:
    for fact in facts:
        assert preflight(fact, LOWERED) == []


def test_container_runtime_needs_docker(facts: list[HostFacts]) -> None:
    checks = [p.check for p in preflight(facts[0], LOWERED, runtime="container")]
    assert checks == ([] if facts[0].docker else ["docker"])


def test_unreachable_host_is_a_clear_host_error(testhosts: HostSet) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HostError, match="connection refused") as caught:
        _facts(testhosts, HostRecord("gone", port, ""))
    assert caught.value.host == f"root@127.0.0.1:{port}"


def test_a_second_read_sees_the_same_host(testhosts: HostSet, facts: list[HostFacts]) -> None:
    again = _facts(testhosts, testhosts.hosts[0])
    stable = ("python", "pid1", "cpus", "memory_bytes", "releases", "current", "files", "wheels")
    assert {k: getattr(again, k) for k in stable} == {k: getattr(facts[0], k) for k in stable}
