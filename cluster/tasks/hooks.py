"""Invoke tasks for the state repo's git hooks: ``hooks.install``; the logic is cluster.hooks."""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from cluster.errors import ClusterError


@task(help={"state": "a bare state repo (path or file:// URL): server hooks; "
                     "a clone of one: the pre-commit hook"})
def install(c: Context, state: str = "") -> None:
    """Install the hooks of hooks/ with this interpreter recorded in them (docs/hooks.md)."""
    from cluster.hooks.install import install as install_hooks
    from cluster.hooks.install import interpreter

    if not state:
        raise Exit("hooks.install: give --state PATH (a bare state repo or a clone of one)", 2)
    try:
        names = install_hooks(state)
    except ClusterError as exc:
        raise Exit(f"hooks.install: {exc}", exc.exit_code) from exc
    if not names:
        raise Exit("hooks.install: no hook scripts found in hooks/", 1)
    print(f"installed {', '.join(names)} into {state} (interpreter {interpreter()})")


ns = Collection("hooks", install)
