"""The facts health gathers and the judgements made of them: plain, frozen records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cluster.state.statuses import AgentState

Status = Literal["healthy", "degraded", "down"]
Level = Literal["note", "degraded", "down"]
RANK: dict[str, int] = {"healthy": 0, "note": 0, "degraded": 1, "down": 2}
EXIT_CODES: dict[Status, int] = {"healthy": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class HostProbe:
    """What the host itself said, in one probe over its SSH connection."""

    service: str  # systemd ActiveState, docker State.Status, or "not-installed"
    restarts: int
    release: str | None  # the release `current` points at
    disk_free: int
    disk_total: int
    mem_total: int
    mem_available: int
    load1: float
    cpus: int
    metrics: dict[str, float] | None = None  # sample name -> value, summed over labels
    metrics_error: str | None = None
    # `claude --version` as the agent finds it: None where no claude-code agent runs, "" when
    # one does and the CLI is missing or fails
    claude_code: str | None = None


@dataclass(frozen=True)
class AgentView:
    """What the state repo says about one agent: its heartbeat and the claims it holds."""

    heartbeat_age: float | None  # None: no heartbeat ref at all
    heartbeat_seconds: float = 0.0
    state: AgentState | None = None
    metrics_port: int | None = None
    sandbox: str = "bwrap"  # "off": the operator runs its task code unsealed
    holding: tuple[str, ...] = ()  # live claims whose holder is this agent
    expired: tuple[str, ...] = ()  # claims it holds whose lease has expired
    reason: str | None = None  # why it is paused or blocked (its heartbeat's own words)
    paused_until: str | None = None  # RFC 3339, while a pause holds
    resumes_in: float | None = None  # seconds from the read until then
    paused_by: str | None = None  # the agent that met the usage limit


@dataclass(frozen=True)
class PausedGroup:
    """Online agents sharing one credential that wait out one usage window."""

    credential: str | None  # the fingerprint, never the value
    until: str
    resumes_in: float
    met_by: str | None
    agents: tuple[str, ...]


@dataclass(frozen=True)
class StaleClaim:
    task: str
    agent: str
    expired_for: float  # seconds since the lease expired


@dataclass(frozen=True)
class StateFacts:
    """The state repo as read from the control host; ``error`` set means unreachable."""

    url: str
    error: str | None = None
    pending: int = 0
    oldest_pending_age: float | None = None
    stale: tuple[StaleClaim, ...] = ()
    invalid: tuple[str, ...] = ()
    agents: dict[str, AgentView] = field(default_factory=dict)
    paused: tuple[PausedGroup, ...] = ()
    # The hosted profile's push budget (pushes a minute; None: no budget) and the pushes the
    # repo took in the last hour (cluster.health.staterepo.pushes_last_hour).
    push_budget: float | None = None
    pushes_last_hour: int | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    def agent(self, name: str) -> AgentView | None:
        """None when the repo could not be read; a view without heartbeat when it has none."""
        if not self.reachable:
            return None
        return self.agents.get(name, AgentView(heartbeat_age=None))


@dataclass(frozen=True)
class HostFacts:
    """One inventory host: its probe (None with ``unreachable``) and the state repo's view."""

    name: str
    runtime: str = "systemd"
    expected_release: str | None = None
    unreachable: str | None = None
    probe: HostProbe | None = None
    agent: AgentView | None = None
    seconds: float = 0.0
    expected_claude_code: str | None = None  # the pinned CLI version (cluster/pins.py)


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str


@dataclass(frozen=True)
class HostHealth:
    name: str
    status: Status
    findings: tuple[Finding, ...]
    facts: HostFacts


@dataclass(frozen=True)
class StateHealth:
    status: Status
    findings: tuple[Finding, ...]
    facts: StateFacts


@dataclass(frozen=True)
class FleetHealth:
    status: Status
    verdict: str  # one line for people
    hosts: tuple[HostHealth, ...]
    state: StateHealth | None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]
