"""Preflight on recorded facts: each shortfall named with the inventory key that lowers it."""

from __future__ import annotations

import json

import pytest

from cluster.deploy.facts import HostFacts, gather_facts, probe_argv
from cluster.deploy.preflight import preflight
from cluster.errors import HostError
from cluster.inventory.model import Thresholds
from cluster.inventory.schema import Runtime

GOOD = HostFacts(
    host="agent-1", python=(3, 11, 2), venv=True, pid1="systemd", systemd_booted=True,
    systemctl=True, docker=False, cpus=8, memory_bytes=32 * 10**9,
    disk_free_bytes=100 * 10**9, clock_skew_s=0.2, clock_uncertainty_s=0.01,
)  # fmt: skip


def checks(
    facts: HostFacts, thresholds: Thresholds | None = None, runtime: Runtime = "systemd"
) -> dict[str, str]:
    return {p.check: str(p) for p in preflight(facts, thresholds or Thresholds(), runtime)}


def test_a_ready_host_has_no_problems() -> None:
    assert preflight(GOOD, Thresholds()) == []


def test_small_host_fails_defaults_and_passes_lowered_thresholds() -> None:
    small = GOOD.model_copy(update={"cpus": 2, "memory_bytes": 8 * 10**9})
    found = checks(small)
    assert found == {
        "cpus": "agent-1: cpus: 2 CPUs, need at least 4 "
        "(lower min_cpus in the inventory to accept this host)",
        "memory": "agent-1: memory: 8.0 GB of memory, need at least 16 GB "
        "(lower min_memory_gb in the inventory to accept this host)",
    }
    assert checks(small, Thresholds(min_cpus=2, min_memory_gb=8)) == {}


def test_disk_and_clock() -> None:
    bad = GOOD.model_copy(update={"disk_free_bytes": 5 * 10**9, "clock_skew_s": -42.0})
    found = checks(bad)
    assert set(found) == {"disk", "clock"}
    assert "5.0 GB free under /opt, need at least 20 GB" in found["disk"]
    assert "clock is -42.0s off the control host (max 5s; enable NTP" in found["clock"]


def test_skew_within_the_measurements_uncertainty_is_not_a_problem() -> None:
    slow = GOOD.model_copy(update={"clock_skew_s": 5.5, "clock_uncertainty_s": 1.0})
    assert checks(slow) == {}


def test_no_python_stops_early_and_old_python_is_named() -> None:
    assert list(checks(HostFacts(host="x"))) == ["python"]
    old = GOOD.model_copy(update={"python": (3, 9, 2), "venv": False})
    found = checks(old)
    assert found["python"] == "agent-1: python: python3 is 3.9.2, the agent needs >= 3.11"
    assert "install python3-venv" in found["venv"]


def test_runtime_decides_systemd_or_docker() -> None:
    no_systemd = GOOD.model_copy(update={"pid1": "tini", "systemd_booted": False})
    assert "PID 1 is 'tini', not a booted systemd" in checks(no_systemd)["systemd"]
    assert checks(no_systemd, runtime="container") == {
        "docker": "agent-1: docker: docker not found on PATH (runtime: container needs it)"
    }
    with_docker = no_systemd.model_copy(update={"docker": True})
    assert checks(with_docker, runtime="container") == {}


def fake_run(output: dict[str, object], code: int = 0):
    def run(argv: list[str]) -> tuple[int, str, str]:
        assert argv[:2] == ["python3", "-c"]
        return code, json.dumps(output), "boom" if code else ""

    return run


def test_gather_parses_the_probe_and_measures_skew() -> None:
    ticks = iter([100.0, 100.4])
    seen = {
        "remote_time": 110.2, "python": [3, 11, 2], "venv": True, "pid1": "systemd",
        "systemd_booted": True, "systemctl": True, "docker": False, "cpus": 2,
        "memory_bytes": 4 * 10**9, "disk_free_bytes": 9 * 10**9, "releases": ["0.1.0-abc"],
        "current": "/opt/claude-cluster/releases/0.1.0-abc", "files": {"/etc/x": None},
        "wheels": {"a.whl": "f" * 64},
    }  # fmt: skip
    facts = gather_facts(fake_run(seen), "h", clock=lambda: next(ticks))
    assert facts.clock_skew_s == pytest.approx(10.0)
    assert facts.clock_uncertainty_s == pytest.approx(0.2)
    assert (facts.current, facts.releases, facts.python) == (
        "0.1.0-abc",
        ("0.1.0-abc",),
        (3, 11, 2),
    )
    assert facts.systemd and facts.memory_gb == 4.0


def test_gather_without_python_and_with_a_broken_probe() -> None:
    assert gather_facts(fake_run({}, code=127), "h").python is None
    with pytest.raises(HostError, match="h: fact probe exited 1: boom"):
        gather_facts(fake_run({}, code=1), "h")
    with pytest.raises(HostError, match="fact probe printed something unexpected"):
        gather_facts(lambda argv: (0, "not json", ""), "h")


def test_probe_is_one_quoted_argument() -> None:
    argv = probe_argv()
    assert argv[0:2] == ["python3", "-c"] and len(argv) == 4
    compile(argv[2], "probe", "exec")  # valid Python
    assert json.loads(argv[3])["base"] == "/opt/claude-cluster"
