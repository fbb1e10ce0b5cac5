"""One compose cluster: its settings, the agent image, ``up`` (and scale), ``status``, ``down``.

The image is the one ``invoke deploy`` builds for ``runtime: container`` hosts (built once per
release, offline); the work directory holds keys, the state repo and the agents' settings
(cluster.compose.workdir); Compose runs containers/compose/compose.yaml with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import layers
from cluster.agent_schema import AgentConfig
from cluster.compose.binary import Compose, find_binary
from cluster.compose.workdir import STATE_SETTINGS, WorkDir, prepare
from cluster.errors import ConfigError

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "containers" / "compose" / "compose.yaml"
SPECIALTIES = ("backend", "frontend", "testing", "devops")
PROJECT = "claude-cluster"
STATE_PORT = 2222
DASHBOARD_PORT = 8090  # the dashboard's 127.0.0.1 port on the host
GRACE_MARGIN = 30  # seconds of stop_grace_period beyond the agents' stop_grace_seconds
WAIT_SECONDS = 300  # `up --wait`: every service running and healthy


@dataclass(frozen=True)
class ComposeSettings:
    """Which cluster: the project checkout, Compose's project name, the operator's port and
    the dashboard's."""

    root: Path
    project: str = PROJECT
    state_port: int = STATE_PORT
    dashboard_port: int = DASHBOARD_PORT
    image: str | None = None  # default: the release's agent image, built when missing
    work_dir: Path | None = None  # default: <root>/.cluster/compose/<project>
    agent: Mapping[str, Any] = field(default_factory=dict)  # a new agent.yaml's keys
    state_settings: bytes = STATE_SETTINGS  # a new state repo's cluster.yaml

    @property
    def work(self) -> WorkDir:
        return WorkDir(self.work_dir or self.root / layers.WORK_DIR / "compose" / self.project)

    @property
    def state_url(self) -> str:
        """How the operator reaches the state repo: the state service's 127.0.0.1 port."""
        return self.work.operator_url(self.state_port)

    @property
    def dashboard_url(self) -> str:
        """The dashboard (claude-cluster serve) as published on this host: loopback only."""
        return f"http://127.0.0.1:{self.dashboard_port}/"


@dataclass(frozen=True)
class Container:
    """One container of the project, as ``compose ps`` reports it."""

    name: str
    service: str
    state: str  # running, exited, ...
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck


def parse_scale(spec: str) -> dict[str, int]:
    """``backend=3,testing=2`` (or ``agent-backend=3``) as compose's ``--scale`` services."""
    scale: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, count = part.partition("=")
        specialty = name.strip().removeprefix("agent-")
        if not sep or specialty not in SPECIALTIES or not count.strip().isdigit():
            raise ConfigError(f"--scale {part!r}: expected SPECIALTY=N, SPECIALTY one of "
                              f"{', '.join(SPECIALTIES)}")  # fmt: skip
        scale[f"agent-{specialty}"] = int(count)
    return scale


def agent_image(root: Path) -> str:
    """The release's agent image (cluster/deploy/image.py), built offline when missing, with
    deploy's settings (CLUSTER_DEPLOY_*: container_base, claude_code_package) and caches."""
    from rich.console import Console

    from cluster.deploy.image import ensure_agent_image
    from cluster.deploy.run import cli_pack
    from cluster.deploy.settings import load_settings
    from cluster.deploy.wheels import build_wheels
    from cluster.transport import docker

    settings = load_settings({"root": root})
    if not settings.work_dir.is_absolute():
        settings = settings.model_copy(update={"work_dir": root / settings.work_dir})
    wheels = build_wheels(root, settings.cache_dir)
    pack = cli_pack(settings, Console(stderr=True))
    return ensure_agent_image(docker.client(), wheels, root, settings.container_base, pack)


def stop_grace(work: WorkDir) -> int:
    """Compose's stop_grace_period: the agents' stop_grace_seconds (agent.yaml, else the
    default) plus a margin."""
    written = layers.read_file(work.agent_yaml, "agent") if work.agent_yaml.exists() else {}
    default = AgentConfig.model_fields["stop_grace_seconds"].default
    grace = written.get("stop_grace_seconds", default)
    return int(float(grace)) + GRACE_MARGIN


def compose(settings: ComposeSettings, image: str = "") -> Compose:
    """Compose for the cluster, its file's variables set (``image`` only where it is needed)."""
    work = settings.work
    variables = {
        "CLUSTER_COMPOSE_IMAGE": image or settings.image or "unset",
        "CLUSTER_COMPOSE_DIR": str(work.root),
        "CLUSTER_COMPOSE_STATE_PORT": str(settings.state_port),
        "CLUSTER_COMPOSE_DASHBOARD_PORT": str(settings.dashboard_port),
        "CLUSTER_COMPOSE_STOP_GRACE": f"{stop_grace(work)}s",
    }
    return Compose(settings.project, COMPOSE_FILE, variables, find_binary())


def up(settings: ComposeSettings, scale: Mapping[str, int] | None = None,
       wait: bool = True) -> Compose:
    """Image, work directory, then ``compose up --detach`` (``--scale``d; with ``wait``, until
    every container is running and healthy). A second ``up`` changes only what differs."""
    image = settings.image or agent_image(settings.root)
    prepare(settings.work.root, settings.state_port, settings.agent, settings.state_settings)
    runner = compose(settings, image)
    args = ["up", "--detach", "--remove-orphans"]
    if wait:
        args += ["--wait", "--wait-timeout", str(WAIT_SECONDS)]
    for service, count in (scale or {}).items():
        args += ["--scale", f"{service}={count}"]
    runner.run(args)
    return runner


def containers(settings: ComposeSettings) -> list[Container]:
    """The project's containers, stopped ones included, in name order."""
    out = compose(settings).run(["ps", "--all", "--format", "json"])
    rows: list[dict[str, Any]] = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("["):  # older Compose: one JSON list
            rows.extend(json.loads(line))
        elif line:
            rows.append(json.loads(line))
    return sorted((Container(str(r.get("Name", "")), str(r.get("Service", "")),
                             str(r.get("State", "")), str(r.get("Health", "")))
                   for r in rows), key=lambda c: c.name)  # fmt: skip


def state_status(settings: ComposeSettings, as_json: bool = False) -> int:
    """``claude-cluster status`` of the cluster's state repo, through the operator's port."""
    env = {**os.environ, "GIT_SSH_COMMAND": settings.work.operator_ssh()}
    argv = [sys.executable, "-m", "cluster", "status", "--state", settings.state_url]
    done = subprocess.run([*argv, *(["--json"] if as_json else [])], env=env, check=False,
                          timeout=120)  # fmt: skip
    return done.returncode


def down(settings: ComposeSettings, volumes: bool = False) -> None:
    """``compose down``: each agent gets SIGTERM and its stop_grace_period to release what it
    holds. The work directory (state repo, keys) stays: the next ``up`` carries on."""
    compose(settings).run(["down", "--remove-orphans", *(["--volumes"] if volumes else [])])
