"""Our crontab entries (backup, health, maintain), tagged ``claude-cluster:<name>``.

Plan, then apply: ``plan`` compares the tab's tagged entries with the wanted ones and lists
only the changes, so a second install is a no-op; untagged entries are never touched.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crontab import CronSlices, CronTab

from cluster.errors import ConfigError

TAG = "claude-cluster:"
BACKUP_SCHEDULE = "17 3 * * *"  # daily, off the hour
HEALTH_SCHEDULE = "*/5 * * * *"
MAINTAIN_SCHEDULE = "47 3 * * *"  # daily, after the backup


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str
    command: str

    @property
    def comment(self) -> str:
        return TAG + self.name


@dataclass(frozen=True)
class Action:
    kind: str  # "add", "replace" or "remove"
    job: Job

    def __str__(self) -> str:
        return f"{self.kind} {self.job.comment}: {self.job.schedule} {self.job.command}"


def invoke_line(project: Path, venv_bin: Path, task: str, args: Sequence[str], log: Path) -> str:
    """``cd <project> && <venv>/bin/invoke -r <project> <task> ARGS >> <log> 2>&1``, quoted."""
    argv = [str(venv_bin / "invoke"), "-r", str(project), task, *args]
    return (f"cd {shlex.quote(str(project))} && {shlex.join(argv)} "
            f">> {shlex.quote(str(log))} 2>&1")  # fmt: skip


def wanted_jobs(project: Path, venv_bin: Path, log_dir: Path, *,
                backup_args: Sequence[str] = (), maintain_args: Sequence[str] = (),
                backup_schedule: str = BACKUP_SCHEDULE, health_schedule: str = HEALTH_SCHEDULE,
                maintain_schedule: str = MAINTAIN_SCHEDULE) -> list[Job]:
    """The three jobs with absolute paths (cron runs in $HOME with a bare environment)."""
    jobs = [
        Job("backup", backup_schedule,
            invoke_line(project, venv_bin, "backup", backup_args, log_dir / "backup.log")),
        Job("health", health_schedule,
            invoke_line(project, venv_bin, "health", ["--json"], log_dir / "health.log")),
        Job("maintain", maintain_schedule,
            invoke_line(project, venv_bin, "maintain", maintain_args, log_dir / "maintain.log")),
    ]  # fmt: skip
    for job in jobs:
        if not CronSlices.is_valid(job.schedule):
            raise ConfigError(f"cron: bad schedule for {job.name}: {job.schedule!r}")
    return jobs


def open_tab(tabfile: Path | None = None, user: str | None = None) -> Any:
    """A python-crontab CronTab: a tab file (created empty if missing) or a user's crontab."""
    if tabfile is not None:
        if not tabfile.exists():
            tabfile.parent.mkdir(parents=True, exist_ok=True)
            tabfile.touch(mode=0o600)
        return CronTab(tabfile=str(tabfile))
    return CronTab(user=user if user else True)


def current_jobs(tab: Any) -> list[Job]:
    """Our entries in ``tab`` (comment starting with the tag), in file order."""
    return [Job(str(item.comment)[len(TAG):], str(item.slices), str(item.command))
            for item in tab if str(item.comment).startswith(TAG)]  # fmt: skip


def plan(current: Sequence[Job], wanted: Sequence[Job]) -> list[Action]:
    """The changes that make ``current`` equal ``wanted``; empty when it already does."""
    actions: list[Action] = []
    for job in wanted:
        same = [c for c in current if c.name == job.name]
        if same == [job]:
            continue
        actions.append(Action("replace" if same else "add", job))
    return actions


def plan_remove(current: Sequence[Job]) -> list[Action]:
    return [Action("remove", job) for job in current]


def apply(tab: Any, actions: Sequence[Action]) -> None:
    """Carry out ``actions`` on ``tab`` and write it once (nothing is written for no actions)."""
    if not actions:
        return
    for action in actions:
        job = action.job
        items = list(tab.find_comment(job.comment))
        keep = items[0] if items and action.kind != "remove" else None
        for item in items:
            if item is not keep:
                tab.remove(item)
        if action.kind == "remove":
            continue
        if keep is None:
            keep = tab.new(command=job.command, comment=job.comment)
        keep.set_command(job.command)  # a replaced entry keeps its place in the tab
        keep.setall(job.schedule)
        keep.enable()
    tab.write()
