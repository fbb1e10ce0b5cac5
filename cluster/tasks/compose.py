"""Invoke tasks for a cluster under Docker Compose: ``compose.up``, ``compose.status``,
``compose.down``; the logic is cluster.compose."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from cluster.compose import cluster
from cluster.errors import ClusterError

ROOT = Path(__file__).resolve().parents[2]
HELP = {"project": f"Compose project name (default {cluster.PROJECT})",
        "port": f"the state service's sshd on 127.0.0.1:PORT (default {cluster.STATE_PORT})"}


def _settings(project: str, port: int, image: str = "") -> cluster.ComposeSettings:
    return cluster.ComposeSettings(ROOT, project=project or cluster.PROJECT,
                                   state_port=port or cluster.STATE_PORT, image=image or None)


def _reach(settings: cluster.ComposeSettings) -> str:
    return (f"state repo: {settings.state_url}\n"
            f"  export GIT_SSH_COMMAND='{settings.work.operator_ssh()}'\n"
            f"  claude-cluster status --state {settings.state_url}\n"
            f"  claude-cluster task submit --state {settings.state_url} FILE...")


@task(help={**HELP, "scale": "replicas per specialty: backend=3,testing=2",
            "image": "the agent image tag (default: this release's, built when missing)"})
def up(c: Context, scale: str = "", project: str = "", port: int = 0, image: str = "") -> None:
    """Start (or converge) the compose cluster: a state service and an agent per specialty."""
    del c
    settings = _settings(project, port, image)
    try:
        cluster.up(settings, cluster.parse_scale(scale))
    except ClusterError as exc:
        raise Exit(f"compose.up: {exc}", exc.exit_code) from exc
    print(f"{settings.project}: up (files in {settings.work.root})\n{_reach(settings)}")


@task(help={**HELP, "json": "the state repo's status as JSON"})
def status(c: Context, project: str = "", port: int = 0, json: bool = False) -> None:
    """The project's containers (state, health) and the agents and tasks of its state repo."""
    del c
    settings = _settings(project, port)
    try:
        rows = cluster.containers(settings)
    except ClusterError as exc:
        raise Exit(f"compose.status: {exc}", exc.exit_code) from exc
    for row in rows:
        print(f"{row.name:40} {row.state:10} {row.health or '-'}")
    if not rows:
        raise Exit(f"compose.status: {settings.project} has no containers", 1)
    if cluster.state_status(settings, as_json=json):
        raise Exit("compose.status: the state repo did not answer: see above", 1)


@task(help=HELP)
def down(c: Context, project: str = "", port: int = 0) -> None:
    """Stop the compose cluster; agents release what they hold first. Its files stay."""
    del c
    settings = _settings(project, port)
    try:
        cluster.down(settings)
    except ClusterError as exc:
        raise Exit(f"compose.down: {exc}", exc.exit_code) from exc
    print(f"{settings.project}: down (state repo and keys kept in {settings.work.root})")


ns = Collection("compose", up, status, down)
