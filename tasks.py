"""Operator tasks for Claude Code Cluster (``invoke --list``). Logic lives in ``cluster/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from cluster.tasks.backup import backup, cron, maintain, restore
from cluster.tasks.compose import ns as compose
from cluster.tasks.dashboard import dashboard
from cluster.tasks.deploy import deploy, rollback
from cluster.tasks.hooks import ns as hooks
from cluster.tasks.k8s import ns as k8s
from cluster.tasks.local import down, up
from cluster.tasks.ops import add_agent, health, logs, remove_agent, restart
from cluster.tasks.testhosts import ns as testhosts

ROOT = Path(__file__).resolve().parent
PY = sys.executable


@task
def lint(c: Context) -> None:
    """ruff and mypy over the whole project."""
    c.run(f"{PY} -m ruff check .", echo=True, pty=False)
    c.run(f"{PY} -m mypy", echo=True, pty=False)


@task(help={"markers": "pytest -m expression (default: every tier)",
            "k": "pytest -k expression",
            "serial": "one pytest process for every tier, instead of the tiers side by side"})
def test(c: Context, markers: str = "", k: str = "", serial: bool = False) -> None:
    """Lint, then run the whole test suite: the unit tier and the host tier side by side."""
    lint(c)
    wants_hosts = not markers or "integration" in markers or "chaos" in markers
    if wants_hosts and Path("scripts/ensure-docker.sh").exists():
        c.run("bash scripts/ensure-docker.sh", echo=True, pty=False)
    if not (markers or k or serial):
        from cluster.tasks.suite import run_tiers

        if run_tiers(PY):
            raise Exit("tests failed: see the tiers above", code=1)
        return
    args = ["-m", "pytest", "-q"]
    if markers:
        args += ["-m", f"'{markers}'"]
    if k:
        args += ["-k", f"'{k}'"]
    c.run(" ".join([PY, *args]), echo=True, pty=False)


@task(help={"state": "state repo URL or path (default: the local demo repo)",
            "json": "print JSON"})
def status(c: Context, state: str = "", json: bool = False) -> None:
    """Agents online/offline and tasks by state, as `claude-cluster status` prints them."""
    if not state:
        local = ROOT / ".cluster" / "local" / "state.git"
        state = str(local if local.exists() else ROOT / ".cluster" / "demo" / "state.git")
    flag = " --json" if json else ""
    result = c.run(f"{PY} -m cluster status --state {state}{flag}", warn=True, pty=False)
    if result is None or result.exited != 0:
        raise Exit("status failed: see the message above", code=1)


@task(help={"agents": "agent processes to run (local demo)",
            "hosts": "run through N real test hosts and invoke deploy instead",
            "keep": "with --hosts: keep the hosts running afterwards"})
def demo(c: Context, agents: int = 2, hosts: int = 0, keep: bool = False) -> None:
    """Run the whole flow locally: a failing test fixed by agents, verified, proposed.

    A state repo, a sample repo with a failing test and agents as local processes: a task is
    committed, claimed, executed, verified, pushed as a branch, proposed, and its result
    committed; a status table ends it."""
    if hosts:
        from cluster.demo_hosts import run_demo_hosts

        code = run_demo_hosts(ROOT / ".cluster" / "demo-hosts", hosts, keep=keep)
    else:
        from cluster.demo import run_demo

        code = run_demo(ROOT / ".cluster" / "demo", agents=agents)
    if code:
        raise Exit("demo failed: see above", code=code)


ns = Collection(lint, test, status, demo, up, down, dashboard)
for operation in (deploy, rollback, add_agent, remove_agent, health, logs, restart,
                  backup, restore, cron, maintain):
    ns.add_task(operation)
ns.add_collection(testhosts)
ns.add_collection(hooks)
ns.add_collection(compose)
ns.add_collection(k8s)
ns.configure({"run": {"echo": False}})
os.environ.setdefault("PYTHONUNBUFFERED", "1")
