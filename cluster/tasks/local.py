"""Invoke adapters for a local cluster that keeps running: ``invoke up`` and ``invoke down``."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from cluster.localcluster import down as stop_all
from cluster.localcluster import up as start

LOCAL = Path(__file__).resolve().parents[2] / ".cluster" / "local"


@task(help={"agents": "agent processes to keep running",
            "specialty": "comma-separated specialties they serve",
            "max_tasks": "tasks per agent at once"})
def up(c: Context, agents: int = 2, specialty: str = "backend,frontend,testing,devops,docs",
       max_tasks: int = 1) -> None:
    """Keep a local cluster running: a state repo and agents as background processes."""
    del c
    for agent in start(LOCAL, agents, specialty, max_tasks):
        print(f"{agent.name}: {'running' if agent.running else 'not running'} (pid {agent.pid})")
    print(f"state repo: {LOCAL / 'state.git'}\n"
          f"submit:     claude-cluster task submit --state {LOCAL / 'state.git'} FILE...\n"
          f"watch:      invoke status --state {LOCAL / 'state.git'}\n"
          f"logs:       {LOCAL / 'logs'}")


@task
def down(c: Context) -> None:
    """Stop the local cluster's agents; they release what they hold first."""
    del c
    stopped = stop_all(LOCAL)
    print(f"stopped {len(stopped)} agent(s)" + (f": {', '.join(stopped)}" if stopped else ""))
