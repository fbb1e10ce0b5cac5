"""Gather health facts from every selected host and the state repo in parallel, then judge."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from cluster.deploy.run import select
from cluster.deploy.wheels import project_version, source_hash
from cluster.errors import ClusterError
from cluster.health.connect import HandshakeLimiter, open_connection
from cluster.health.model import AgentView, FleetHealth, HostFacts, HostProbe, StateFacts
from cluster.health.probe import run_probe
from cluster.health.staterepo import read_state_facts
from cluster.health.verdict import Limits, fleet_health, host_health, state_health
from cluster.inventory import HostSpec, load_inventory
from cluster.layers import WORK_DIR
from cluster.pins import CLAUDE_CODE_VERSION
from cluster.transport import run


@dataclass(frozen=True)
class HealthSettings:
    """What one health check reads; ``root`` is the project whose release hosts should run."""

    inventory: Path = Path("inventory")
    limit: tuple[str, ...] = ()
    work_dir: Path = WORK_DIR
    root: Path | None = field(default_factory=Path.cwd)
    state_url: str | None = None  # how this machine reads the state repo (default: hosts')
    state_ssh_command: str | None = None  # GIT_SSH_COMMAND for that read
    connect_timeout: float = 10.0
    handshakes: int = 8  # per target, below sshd's default MaxStartups (10)
    workers: int = 32
    limits: Limits = field(default_factory=Limits)


def expected_release(root: Path | None) -> str | None:
    """``<version>-<source hash>`` of the project at ``root``: what deploy would install."""
    if root is None or not (root / "pyproject.toml").is_file():
        return None
    return f"{project_version(root)}-{source_hash(root)}"


def state_url(settings: HealthSettings, hosts: list[HostSpec]) -> str | None:
    urls = {h.state_repo for h in hosts}
    return settings.state_url or (urls.pop() if len(urls) == 1 else None)


def check_fleet(settings: HealthSettings) -> FleetHealth:
    """Every host and the state repo at once; failures are findings, never exceptions."""
    inventory = load_inventory(settings.inventory)
    hosts = select(inventory, settings.limit)
    expected = expected_release(settings.root)
    url = state_url(settings, hosts)
    limiter = HandshakeLimiter(settings.handshakes)
    with ThreadPoolExecutor(max_workers=max(2, min(settings.workers, len(hosts) + 1))) as pool:
        state: Future[StateFacts] | None = None
        if url is not None:
            state = pool.submit(read_state_facts, url, settings.work_dir,
                                settings.state_ssh_command)  # fmt: skip
        check = partial(check_host, settings=settings, limiter=limiter, expected=expected,
                        state=state)  # fmt: skip
        facts = list(pool.map(check, hosts))
        state_facts = state.result() if state is not None else None
    judged = [host_health(f, settings.limits) for f in facts]
    judged_state = state_health(state_facts, settings.limits) if state_facts else None
    return fleet_health(judged, judged_state)


def check_host(
    spec: HostSpec,
    settings: HealthSettings,
    limiter: HandshakeLimiter,
    expected: str | None,
    state: Future[StateFacts] | None,
) -> HostFacts:
    """One host over one connection; the metrics port comes from its heartbeat when it has one."""
    started = time.monotonic()
    base = HostFacts(spec.name, spec.runtime, expected, expected_claude_code=CLAUDE_CODE_VERSION)
    try:
        conn = open_connection(spec, limiter, settings.connect_timeout)
    except ClusterError as exc:
        return _done(base, started, _agent(state, spec), unreachable=_reason(exc, spec.name))
    try:
        agent = _agent(state, spec)
        port = (agent.metrics_port if agent else None) or spec.metrics_port
        runner: Callable[[list[str]], tuple[int, str, str]] = partial(
            run, conn, check=False, timeout=30.0
        )
        probe = run_probe(runner, spec.name, spec.runtime, port)
    except ClusterError as exc:
        return _done(base, started, _agent(state, spec), unreachable=_reason(exc, spec.name))
    finally:
        conn.close()
    return _done(base, started, agent, probe=probe)


def _agent(state: Future[StateFacts] | None, spec: HostSpec) -> AgentView | None:
    if state is None:
        return None
    try:
        return state.result(timeout=60.0).agent(spec.name)
    except FutureTimeout:
        return None


def _done(
    base: HostFacts,
    started: float,
    agent: AgentView | None,
    unreachable: str | None = None,
    probe: HostProbe | None = None,
) -> HostFacts:
    return replace(base, agent=agent, unreachable=unreachable, probe=probe,
                   seconds=round(time.monotonic() - started, 3))  # fmt: skip


def _reason(exc: ClusterError, host: str) -> str:
    return str(exc).removeprefix(f"{host}: ")
