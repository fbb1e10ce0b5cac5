"""Pure judgement: facts -> per-host status -> fleet verdict. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cluster.health.model import (
    RANK,
    AgentView,
    Finding,
    FleetHealth,
    HostFacts,
    HostHealth,
    HostProbe,
    StateFacts,
    StateHealth,
    Status,
)
from cluster.state.report import human_duration

RUNNING = {"systemd": ("active",), "container": ("running",)}
GB = 1e9


@dataclass(frozen=True)
class Limits:
    """Where a fact becomes a finding; an operator may loosen them with flags."""

    min_disk_free_gb: float = 1.0
    min_disk_free_pct: float = 5.0
    min_mem_available_pct: float = 5.0
    max_load_per_cpu: float = 2.0
    restarts_degraded: int = 3  # below this, restarts are a note
    heartbeat_intervals: float = 3.0  # an agent is offline after this many silent intervals
    pending_age_note_s: float = 3600.0
    push_warn_fraction: float = 0.8  # a hosted repo's push rate warns from here


def worst(statuses: Iterable[str]) -> Status:
    rank = max((RANK[s] for s in statuses), default=0)
    return ("healthy", "degraded", "down")[rank]


def host_health(facts: HostFacts, limits: Limits = Limits()) -> HostHealth:
    """``down``: unreachable. ``degraded``: the agent is not serving as it should. Else healthy."""
    findings: list[Finding] = []
    if facts.unreachable is not None or facts.probe is None:
        findings.append(Finding("down", f"unreachable: {facts.unreachable or 'no probe'}"))
    else:
        findings += _probe_findings(facts, facts.probe, limits)
    if facts.agent is not None:
        findings += _agent_findings(facts.agent, limits)
    status = worst(f.level for f in findings)
    return HostHealth(facts.name, status, tuple(findings), facts)


def _probe_findings(facts: HostFacts, probe: HostProbe, limits: Limits) -> list[Finding]:
    out: list[Finding] = []
    what = "container" if facts.runtime == "container" else "unit"
    if probe.service not in RUNNING.get(facts.runtime, ("active",)):
        out.append(Finding("degraded", f"{what} {probe.service}"))
    if probe.restarts >= limits.restarts_degraded:
        out.append(Finding("degraded", f"restarted {probe.restarts} times"))
    elif probe.restarts:
        out.append(Finding("note", f"restarted {probe.restarts} time(s)"))
    if facts.expected_release and probe.release != facts.expected_release:
        out.append(Finding("degraded", f"release {probe.release or 'none'}, "
                                       f"expected {facts.expected_release}"))  # fmt: skip
    cli, pinned = probe.claude_code, facts.expected_claude_code
    if cli is not None and pinned and cli != pinned:
        out.append(Finding("degraded", f"claude-code {cli or 'missing'}, pinned {pinned}"))
    free_pct = 100.0 * probe.disk_free / probe.disk_total if probe.disk_total else 100.0
    low = probe.disk_free < limits.min_disk_free_gb * GB or free_pct < limits.min_disk_free_pct
    if probe.disk_total and low:  # a total of 0: not measured (a stopped container)
        free = f"disk {probe.disk_free / GB:.1f} GB free ({free_pct:.0f}%)"
        out.append(Finding("degraded", free))
    mem_pct = 100.0 * probe.mem_available / probe.mem_total if probe.mem_total else 100.0
    if mem_pct < limits.min_mem_available_pct:
        out.append(Finding("degraded", f"memory {mem_pct:.0f}% available"))
    if probe.load1 > limits.max_load_per_cpu * max(probe.cpus, 1):
        out.append(Finding("note", f"load {probe.load1:.1f} on {probe.cpus} CPU(s)"))
    if probe.metrics_error:
        out.append(Finding("note", f"metrics unreadable: {probe.metrics_error}"))
    return out


def _agent_findings(agent: AgentView, limits: Limits) -> list[Finding]:
    out: list[Finding] = []
    if agent.heartbeat_age is None:
        out.append(Finding("degraded", "no heartbeat in the state repo"))
    elif agent.state == "stopped":
        out.append(Finding("degraded", "agent says it stopped"))
    elif agent.heartbeat_age > limits.heartbeat_intervals * max(agent.heartbeat_seconds, 1.0):
        out.append(Finding("degraded", f"last heartbeat {agent.heartbeat_age:.0f}s ago"))
    if agent.state == "blocked":
        why = agent.reason or "the model API refused its credential"
        out.append(Finding("degraded", f"blocked, claims nothing: {why}; "
                                       "restart it with a working credential"))
    elif agent.paused_until is not None and agent.resumes_in is not None:
        by = f" (limit met by {agent.paused_by})" if agent.paused_by else ""
        out.append(Finding("note", f"paused until {agent.paused_until}{by}, resumes in "
                                   f"{human_duration(agent.resumes_in)}"))
    if agent.sandbox == "off":
        out.append(Finding("note", "sandbox off: its task code runs unsealed, with the "
                                   "agent's rights and credentials"))
    if agent.expired:
        out.append(Finding("degraded", f"holds {len(agent.expired)} expired claim(s): "
                                       f"{', '.join(agent.expired)}"))  # fmt: skip
    return out


def state_health(facts: StateFacts, limits: Limits = Limits()) -> StateHealth:
    """``down``: unreadable (no agent can claim or publish). ``degraded``: stale claims."""
    findings: list[Finding] = []
    if facts.error is not None:
        findings.append(Finding("down", f"unreachable: {facts.error}"))
    for claim in facts.stale:
        findings.append(Finding("degraded", f"stale claim {claim.task} (held by {claim.agent}, "
                                            f"expired {claim.expired_for:.0f}s ago)"))  # fmt: skip
    if facts.invalid:
        findings.append(Finding("note", f"{len(facts.invalid)} invalid task(s): "
                                        f"{', '.join(facts.invalid[:5])}"))  # fmt: skip
    for group in facts.paused:
        by = f", limit met by {group.met_by}" if group.met_by else ""
        findings.append(Finding("note", f"usage window: {len(group.agents)} agent(s) paused "
                                        f"({', '.join(group.agents[:8])}{by}) until {group.until}, "
                                        f"resume in {human_duration(group.resumes_in)}"))
    findings += _push_rate(facts, limits)
    age = facts.oldest_pending_age
    if age is not None and age > limits.pending_age_note_s:
        findings.append(Finding("note", f"oldest pending task waits for {age / 60:.0f} min"))
    return StateHealth(worst(f.level for f in findings), tuple(findings), facts)


def _push_rate(facts: StateFacts, limits: Limits) -> list[Finding]:
    """A hosted state repo's pushes in the last hour against its budget: a note, one that
    warns from ``push_warn_fraction`` of the budget, degraded past it."""
    if facts.push_budget is None or facts.pushes_last_hour is None:
        return []
    rate, budget = facts.pushes_last_hour / 60.0, facts.push_budget
    text = f"push rate {rate:.1f}/min over the last hour, budget {budget:g}/min"
    if rate > budget:
        return [Finding("degraded", f"{text}: over the budget; the forge may refuse or delay "
                                    "pushes (raise idle_heartbeat_seconds, fold_delay_seconds)")]
    if rate >= limits.push_warn_fraction * budget:
        return [Finding("note", f"{text}: {rate / budget:.0%} of it, close to the budget")]
    return [Finding("note", text)]


def fleet_health(hosts: Sequence[HostHealth], state: StateHealth | None) -> FleetHealth:
    """The worst status of any host or the state repo, with a one-line verdict naming them."""
    statuses = [h.status for h in hosts] + ([state.status] if state else [])
    status = worst(statuses)
    parts = []
    for level in ("down", "degraded"):
        names = [h.name for h in hosts if h.status == level]
        if state is not None and state.status == level:
            names.append("state repo")
        if names:
            parts.append(f"{level}: {', '.join(names)}")
    healthy = sum(1 for h in hosts if h.status == "healthy")
    summary = f"{healthy}/{len(hosts)} hosts healthy"
    verdict = f"{status.upper()}: {summary}" + (f"; {'; '.join(parts)}" if parts else "")
    return FleetHealth(status, verdict, tuple(hosts), state)


__all__ = ["AgentView", "Limits", "fleet_health", "host_health", "state_health", "worst"]
