"""Preflight: a pure check of a host's facts against the inventory's thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cluster.deploy.facts import HostFacts
from cluster.inventory.model import Thresholds
from cluster.inventory.schema import Runtime

MIN_PYTHON = (3, 11)
Report = Callable[[str, str], None]


class Measured(Protocol):
    """What the resource checks read of a host (HostFacts, ContainerFacts)."""

    @property
    def cpus(self) -> int: ...
    @property
    def memory_gb(self) -> float: ...
    @property
    def disk_free_gb(self) -> float: ...
    @property
    def clock_skew_s(self) -> float: ...
    @property
    def clock_uncertainty_s(self) -> float: ...


@dataclass(frozen=True)
class Problem:
    """One reason a host is not ready; ``check`` is a stable name, ``message`` is for people."""

    host: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.host}: {self.check}: {self.message}"


def preflight(
    facts: HostFacts, thresholds: Thresholds, runtime: Runtime = "systemd"
) -> list[Problem]:
    """Every problem found (empty: the host is ready). Nothing here reads or changes a host."""
    problems: list[Problem] = []

    def problem(check: str, message: str) -> None:
        problems.append(Problem(facts.host, check, message))

    if facts.python is None:
        problem("python", "python3 not found on PATH (the agent needs Python >= 3.11)")
        return problems
    if facts.python < MIN_PYTHON:
        found, need = ".".join(map(str, facts.python)), ".".join(map(str, MIN_PYTHON))
        problem("python", f"python3 is {found}, the agent needs >= {need}")
    if not facts.venv:
        problem("venv", "python3 cannot create virtual environments (install python3-venv)")
    if runtime == "systemd" and not facts.systemd:
        problem(
            "systemd",
            f"PID 1 is {facts.pid1 or 'unknown'!r}, not a booted systemd "
            "(use runtime: container, or a host that boots systemd)",
        )
    if runtime == "container" and not facts.docker:
        problem("docker", "docker not found on PATH (runtime: container needs it)")
    check_resources(facts, thresholds, problem)
    return problems


def check_resources(
    facts: Measured, limits: Thresholds, problem: Report, where: str = "/opt"
) -> None:
    """Report each resource below ``limits`` (disk: free space under ``where``)."""
    if facts.cpus < limits.min_cpus:
        problem(
            "cpus",
            f"{facts.cpus} CPUs, need at least {limits.min_cpus} "
            "(lower min_cpus in the inventory to accept this host)",
        )
    if facts.memory_gb < limits.min_memory_gb:
        problem(
            "memory",
            f"{facts.memory_gb:.1f} GB of memory, need at least {limits.min_memory_gb:g} GB "
            "(lower min_memory_gb in the inventory to accept this host)",
        )
    if facts.disk_free_gb < limits.min_disk_gb:
        problem(
            "disk",
            f"{facts.disk_free_gb:.1f} GB free under {where}, "
            f"need at least {limits.min_disk_gb:g} GB "
            "(free space, or lower min_disk_gb in the inventory)",
        )
    # Only a skew beyond what the measurement's own round trip could explain counts.
    if abs(facts.clock_skew_s) - facts.clock_uncertainty_s > limits.max_clock_skew_s:
        problem(
            "clock",
            f"clock is {facts.clock_skew_s:+.1f}s off the control host "
            f"(max {limits.max_clock_skew_s:g}s; enable NTP: systemd-timesyncd or chrony)",
        )
