"""Invoke tasks for a cluster under Docker Compose: ``compose.up``, ``compose.status``,
``compose.down``; the logic is cluster.compose."""

from __future__ import annotations

import shlex
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
DASHBOARD_HELP = {"dashboard_port": "the dashboard on 127.0.0.1:PORT "
                                    f"(default {cluster.DASHBOARD_PORT})"}


def _settings(project: str, port: int, image: str = "",
              dashboard_port: int = 0) -> cluster.ComposeSettings:
    return cluster.ComposeSettings(ROOT, project=project or cluster.PROJECT,
                                   state_port=port or cluster.STATE_PORT, image=image or None,
                                   dashboard_port=dashboard_port or cluster.DASHBOARD_PORT)


def _reach(settings: cluster.ComposeSettings) -> str:
    return (f"state repo: {settings.state_url}\n"
            f"  export GIT_SSH_COMMAND={shlex.quote(settings.work.operator_ssh())}\n"
            f"  claude-cluster status --state {settings.state_url}\n"
            f"  claude-cluster task submit --state {settings.state_url} FILE...\n"
            f"dashboard: {settings.dashboard_url} (user any, password: the token in "
            f"{settings.work.serve_token})\n"
            f"  curl -H \"Authorization: Bearer $(cat {settings.work.serve_token})\" "
            f"{settings.dashboard_url}api/cluster/status")


@task(help={**HELP, **DASHBOARD_HELP, "scale": "replicas per specialty: backend=3,testing=2",
            "image": "the agent image tag (default: this release's, built when missing)"})
def up(c: Context, scale: str = "", project: str = "", port: int = 0, image: str = "",
       dashboard_port: int = 0) -> None:
    """Start (or converge) the compose cluster: a state service, an agent per specialty and
    the dashboard."""
    del c
    settings = _settings(project, port, image, dashboard_port)
    try:
        cluster.up(settings, cluster.parse_scale(scale))
    except ClusterError as exc:
        raise Exit(f"compose.up: {exc}", exc.exit_code) from exc
    print(f"{settings.project}: up (files in {settings.work.root})\n{_reach(settings)}")


@task(help={**HELP, **DASHBOARD_HELP, "json": "the state repo's status as JSON"})
def status(c: Context, project: str = "", port: int = 0, json: bool = False,
           dashboard_port: int = 0) -> None:
    """The project's containers (state, health; the dashboard's URL) and the agents and tasks
    of its state repo."""
    del c
    settings = _settings(project, port, dashboard_port=dashboard_port)
    try:
        rows = cluster.containers(settings)
    except ClusterError as exc:
        raise Exit(f"compose.status: {exc}", exc.exit_code) from exc
    for row in rows:
        print(f"{row.name:40} {row.state:10} {row.health or '-'}")
    if not rows:
        raise Exit(f"compose.status: {settings.project} has no containers", 1)
    if any(row.service == "dashboard" for row in rows):
        print(f"dashboard: {settings.dashboard_url} (token in {settings.work.serve_token})")
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
