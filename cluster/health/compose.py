"""Health of a Compose cluster (``invoke health --compose``): the same facts and verdicts as
for inventory hosts, gathered from the Docker engine and the agents' own containers.

Each agent container is one "host": the engine says its state, health and restarts and which
image (hence release) it runs; the read-only probe runs inside it (``docker exec``, as the
agent's user) for its disk, memory, load, Claude Code CLI and metrics; the state repo is read
through the operator's port, as ``claude-cluster status`` reads it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from cluster.compose.cluster import ComposeSettings, Container, containers
from cluster.compose.identity import agent_id
from cluster.errors import ClusterError
from cluster.health.gather import expected_release
from cluster.health.model import FleetHealth, HostFacts, HostProbe
from cluster.health.probe import run_probe
from cluster.health.staterepo import read_state_facts
from cluster.health.verdict import Limits, fleet_health, host_health, state_health
from cluster.pins import CLAUDE_CODE_VERSION
from cluster.transport import docker

# The agent image's own layout (containers/agent/Dockerfile, containers/compose/compose.yaml).
IMAGE_PATHS = {
    "base": "/var/lib/claude-cluster",  # the agents' work directory: where workspaces go
    "config": "/etc/claude-cluster/agent.yaml",
    "agent_path": "/opt/claude-cluster/venv/bin:/opt/claude-cluster/claude-code/bin:/usr/bin:/bin",
    "current": "/nonexistent",  # releases are images here: the engine names it
}
METRICS_PORT = 9464  # CLUSTER_AGENT_METRICS_PORT in compose.yaml


def check_compose(settings: ComposeSettings, limits: Limits | None = None,
                  expected: str | None = None) -> FleetHealth:
    """Every agent container of the project and its state repo; failures are findings.
    ``expected``: the release the agents should run (default: the project's at its root)."""
    limits = limits or Limits()
    rows = [row for row in containers(settings) if row.service.startswith("agent-")]
    if not rows:
        raise ClusterError(f"Compose project {settings.project} has no agent containers "
                           "(start it with invoke compose.up)")  # fmt: skip
    expected = expected or expected_release(settings.root)
    work = settings.work
    state = read_state_facts(settings.state_url, work.root / "health",
                             work.operator_ssh())  # fmt: skip
    handle = docker.client()
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(rows)))) as pool:
        facts = list(pool.map(lambda row: _agent_facts(handle, row, expected), rows))
    facts = [replace(f, agent=state.agent(f.name)) for f in facts]
    judged = [host_health(f, limits) for f in facts]
    return fleet_health(judged, state_health(state, limits))


def _agent_facts(handle: docker.Client, row: Container, expected: str | None) -> HostFacts:
    started = time.monotonic()
    try:
        name = agent_id(row.name, row.service)
    except ClusterError:
        name = row.name
    base = HostFacts(name, "container", expected, expected_claude_code=CLAUDE_CODE_VERSION)
    try:
        container = docker.get(handle, row.name)
        engine = _engine_view(container.attrs, expected)
        probe: HostProbe | None = None
        if engine.service == "running" or engine.service == "unhealthy":
            inside = run_probe(lambda argv: docker.exec_argv(container, argv), name, "inside",
                               METRICS_PORT, IMAGE_PATHS)  # fmt: skip
            probe = replace(inside, service=engine.service, restarts=engine.restarts,
                            release=engine.release)  # fmt: skip
        else:
            probe = engine
    except ClusterError as exc:
        return replace(base, unreachable=str(exc), seconds=time.monotonic() - started)
    return replace(base, probe=probe, seconds=time.monotonic() - started)


def _engine_view(attrs: dict[str, object], expected: str | None) -> HostProbe:
    """What the engine says of a container: its state (``unhealthy`` when its healthcheck
    fails), restarts and the release its image carries in its tag."""
    state = attrs.get("State") if isinstance(attrs.get("State"), dict) else {}
    assert isinstance(state, dict)
    status = str(state.get("Status") or "unknown")
    health = state.get("Health")
    if status == "running" and isinstance(health, dict) and health.get("Status") == "unhealthy":
        status = "unhealthy"
    config = attrs.get("Config") if isinstance(attrs.get("Config"), dict) else {}
    assert isinstance(config, dict)
    return HostProbe(service=status, restarts=int(str(attrs.get("RestartCount") or 0)),
                     release=image_release(str(config.get("Image") or ""), expected),
                     disk_free=0, disk_total=0, mem_total=0, mem_available=0, load1=0.0,
                     cpus=0)  # fmt: skip


def image_release(image: str, expected: str | None) -> str | None:
    """The release in an agent image's tag (``<repo>:<release>-<base>-<cli>``): ``expected``
    when the tag starts with it, else the tag itself (an older or foreign image)."""
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    if not tag:
        return None
    return expected if expected and tag.startswith(f"{expected}-") else tag
