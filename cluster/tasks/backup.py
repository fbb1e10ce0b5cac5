"""Invoke adapters for ``backup``, ``restore``, ``cron`` and ``maintain``; logic: cluster.backup."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.console import Console

from cluster.errors import ClusterError

ROOT = Path(__file__).resolve().parents[2]
HELP = {
    "state": "state repo: path, file://, ssh://user@host:port/path (default: the inventory's)",
    "dest": "directory holding the backups (default .cluster/backups)",
    "keep_days": "remove backups older than this many days (default 30; 0: never)",
    "keep": "keep at most N backups (default 0: no limit)",
    "inventory": "inventory directory: backed up; its ssh key/known_hosts reach the state host",
    "config": "extra non-secret YAML config file to back up (repeatable), e.g. agent.yaml",
    "tarball": "write one .tar.gz instead of a directory",
    "ssh_key": "private key for an ssh:// state repo",
    "known_hosts": "known_hosts holding the state host's key (strict checking)",
}


def _settings(**flags: Any) -> Any:
    from cluster.backup.settings import load_settings

    return load_settings(flags)


def _refs_line(refs: dict[str, str]) -> str:
    kinds = Counter(ref.split("/")[1] if ref.count("/") > 1 else ref for ref in refs)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


@task(help=HELP, iterable=["config"], auto_shortflags=False)
def backup(c: Context, state: str = "", dest: str = "", keep_days: str = "", keep: str = "",
           inventory: str = "", config: list[str] | None = None, tarball: bool = False,
           ssh_key: str = "", known_hosts: str = "") -> None:  # fmt: skip
    """Back up the state repo (every ref), inventory and config; verify; prune old backups."""
    from cluster.backup.create import create_backup

    try:
        settings = _settings(state=state, dest=dest, keep_days=keep_days, keep=keep,
                             inventory=inventory, config=tuple(config or ()),
                             tarball=tarball or None, ssh_key=ssh_key,
                             known_hosts=known_hosts)  # fmt: skip
        outcome = create_backup(settings, console=Console(stderr=True))
    except ClusterError as exc:
        raise Exit(f"backup: {exc}", exc.exit_code) from exc
    print(f"backup {outcome.path}: {outcome.size} bytes, refs: {_refs_line(outcome.refs)}")
    print("  verified: git bundle verify ok; secrets: not included")
    for path in outcome.pruned:
        print(f"  pruned {path}")


@task(auto_shortflags=False,
      help={"from_": "backup directory, its .tar.gz, or a .bundle file",
            "to": "where the bare state repo goes (default .cluster/state.git)",
            "force": "replace a non-empty --to",
            "hooks": "directory with pre-receive/update/post-receive hooks to install"})
def restore(c: Context, from_: str, to: str = ".cluster/state.git", force: bool = False,
            hooks: str = "") -> None:  # fmt: skip
    """Check a backup against its manifest, then restore the bare state repo with every ref."""
    from cluster.backup.restore import restore as run_restore

    try:
        outcome = run_restore(Path(from_), Path(to), force=force,
                              hooks=Path(hooks) if hooks else None,
                              console=Console(stderr=True))  # fmt: skip
    except ClusterError as exc:
        raise Exit(f"restore: {exc}", exc.exit_code) from exc
    checked = "checksums match the manifest" if outcome.manifest_checked else (
        "a bare bundle: no manifest to check against")
    print(f"restored {outcome.path}: refs: {_refs_line(outcome.refs)}; {checked}")
    print("  stop every agent before restoring; start them again against this repo")


@task(auto_shortflags=False,
      help={"install": "install or update our entries", "remove": "remove our entries",
            "show": "print our entries", "tabfile": "a crontab file instead of a user's crontab",
            "user": "whose crontab (default: yours)", "state": HELP["state"],
            "dest": HELP["dest"], "inventory": HELP["inventory"],
            "backup_schedule": "cron schedule of the backup (default '17 3 * * *')",
            "maintain_schedule": "cron schedule of maintain (default '47 3 * * *')",
            "log_dir": "where the jobs append their output (default .cluster/logs)"})
def cron(c: Context, install: bool = False, remove: bool = False, show: bool = False,
         tabfile: str = "", user: str = "", state: str = "", dest: str = "",
         inventory: str = "", backup_schedule: str = "", maintain_schedule: str = "",
         log_dir: str = "") -> None:  # fmt: skip
    """Manage the crontab entries tagged claude-cluster:<name>: backup, health, maintain."""
    from cluster.backup import cron as crontab

    if [install, remove, show].count(True) != 1:
        raise Exit("cron: give exactly one of --install, --remove, --show", 2)
    try:
        tab = crontab.open_tab(Path(tabfile) if tabfile else None, user or None)
        current = crontab.current_jobs(tab)
        if show:
            for job in current:
                print(f"{job.schedule} {job.command}  # {job.comment}")
            return
        if remove:
            actions = crontab.plan_remove(current)
        else:
            if not (state or inventory or os.environ.get("CLUSTER_BACKUP_STATE")):
                raise Exit("cron --install: pass --state or --inventory (the jobs need a repo)", 2)
            args = _job_args(state, dest, inventory)
            logs = Path(log_dir or ROOT / ".cluster" / "logs").absolute()
            logs.mkdir(parents=True, exist_ok=True)
            wanted = crontab.wanted_jobs(
                ROOT, Path(sys.executable).parent, logs, backup_args=args[0],
                maintain_args=args[1],
                backup_schedule=backup_schedule or crontab.BACKUP_SCHEDULE,
                maintain_schedule=maintain_schedule or crontab.MAINTAIN_SCHEDULE)
            actions = crontab.plan(current, wanted)
        crontab.apply(tab, actions)
    except ClusterError as exc:
        raise Exit(f"cron: {exc}", exc.exit_code) from exc
    for action in actions:
        print(action)
    print(f"cron: {len(actions)} change(s)" if actions else "cron: already up to date")


def _job_args(state: str, dest: str, inventory: str) -> tuple[list[str], list[str]]:
    """Flags for the scheduled commands; paths made absolute (cron starts in $HOME)."""
    common: list[str] = []
    if state:
        local = "://" not in state and "@" not in state
        common += ["--state", str(Path(state).absolute()) if local else state]
    if inventory:
        common += ["--inventory", str(Path(inventory).absolute())]
    backup_args = common + (["--dest", str(Path(dest).absolute())] if dest else [])
    return backup_args, common


@task(auto_shortflags=False,
      help={"state": HELP["state"], "inventory": HELP["inventory"],
            "archive_days": "prune results archived longer ago than this (default 90)",
            "agent_days": "delete heartbeats of agents not seen for this long (default 7)",
            "ssh_key": HELP["ssh_key"], "known_hosts": HELP["known_hosts"]})
def maintain(c: Context, state: str = "", inventory: str = "", archive_days: str = "",
             agent_days: str = "", ssh_key: str = "", known_hosts: str = "") -> None:  # fmt: skip
    """State repo upkeep: prune old results from archive/ (history keeps them), drop dead
    heartbeats, git gc."""
    from cluster.backup.maintain import maintain as run_maintain

    try:
        settings = _settings(state=state, inventory=inventory, archive_days=archive_days,
                             agent_days=agent_days, ssh_key=ssh_key,
                             known_hosts=known_hosts)  # fmt: skip
        outcome = run_maintain(settings)
    except ClusterError as exc:
        raise Exit(f"maintain: {exc}", exc.exit_code) from exc
    print(f"maintain: pruned {len(outcome.pruned)} archived result(s)"
          + (f" in {outcome.commit[:12]}" if outcome.commit else ""))  # fmt: skip
    if outcome.kept_for_dependents:
        print(f"  kept (a task on main depends on them): {', '.join(outcome.kept_for_dependents)}")
    print(f"  deleted {len(outcome.heartbeats_deleted)} stale heartbeat(s)"
          + (f": {', '.join(outcome.heartbeats_deleted)}" if outcome.heartbeats_deleted else ""))
    print(f"  {outcome.gc}")


ns = Collection("backup", backup, restore, cron, maintain)
