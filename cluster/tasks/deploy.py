"""Invoke adapters for ``invoke deploy`` and ``invoke rollback``; the logic is cluster.deploy."""

from __future__ import annotations

from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.console import Console

from cluster.errors import ClusterError

HELP = {
    "limit": "comma-separated hosts or groups (default: every host)",
    "check": "change nothing; list what would change",
    "diff": "show file diffs (secrets masked)",
    "batch": "rolling deploy: N hosts at a time, stop after a failed batch",
    "tags": "only these steps: preflight,code,config,service",
    "inventory": "inventory directory (default: inventory/)",
    "secrets_file": "KEY=VALUE file, mode 0600 (the environment wins over it)",
}


def _settings(**flags: Any) -> Any:
    from cluster.deploy.settings import load_settings

    return load_settings({k: v for k, v in flags.items() if v not in (None, "")})


def _finish(outcomes: Any, console: Console, title: str) -> None:
    from cluster.deploy.summary import print_summary

    print_summary(console, outcomes, title)
    failed = outcomes.failed_hosts  # Nornir's AggregatedResult decides (cluster.deploy.run)
    skipped = [o.host for o in outcomes if o.status == "skipped"]
    if outcomes.failed:
        also = f"; skipped {', '.join(skipped)}" if skipped else ""
        raise Exit(f"{title} failed on {len(failed)} host(s): {', '.join(failed)}{also}", code=1)


@task(help=HELP)
def deploy(
    c: Context, limit: str = "", check: bool = False, diff: bool = False, batch: int = 0,
    tags: str = "", inventory: str = "", secrets_file: str = "",
) -> None:  # fmt: skip
    """Deploy agents to the inventory's hosts: preflight, code, config, service, verify."""
    from cluster.deploy.run import run

    console = Console()
    try:
        settings = _settings(limit=limit, check=check or None, diff=diff or None,
                             batch=batch or None, tags=tags, inventory=inventory,
                             secrets_file=secrets_file)  # fmt: skip
        outcomes = run(settings, console)
    except ClusterError as exc:
        raise Exit(f"deploy: {exc}", exc.exit_code) from exc
    _finish(outcomes, console, "deploy --check" if settings.check else "deploy")


@task(help={"limit": HELP["limit"], "inventory": HELP["inventory"], "check": HELP["check"]})
def rollback(c: Context, limit: str = "", inventory: str = "", check: bool = False) -> None:
    """Return hosts to their previous release (current and previous swap), then verify."""
    from cluster.deploy.run import run

    console = Console()
    try:
        settings = _settings(limit=limit, inventory=inventory, check=check or None)
        outcomes = run(settings, console, rollback=True)
    except ClusterError as exc:
        raise Exit(f"rollback: {exc}", exc.exit_code) from exc
    _finish(outcomes, console, "rollback")
