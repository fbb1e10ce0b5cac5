"""Rich output of a run: a Nornir processor drawing live per-host progress, the summary table."""

from __future__ import annotations

import threading
import types
from collections.abc import Sequence

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Task
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cluster.deploy.outcome import HostOutcome

STYLE = {"changed": "yellow", "ok": "green", "failed": "bold red", "skipped": "magenta"}
DONE = ("changed", "ok", "failed", "skipped")


class LiveProgress:
    """A Nornir processor: a bar for the run and one line per host saying what it is doing.

    Nornir's events draw it all: a host's task starting (its name), each of its steps (the
    subtasks hostrun runs: connect, facts, plan, each action, verify...) and its end (the
    HostOutcome's status).
    Use it as a context manager around the runs; the display is drawn only on a terminal.
    """

    def __init__(self, console: Console, hosts: Sequence[str], title: str) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        self._progress = Progress(*columns, console=console, transient=True,
                                  disable=not console.is_terminal)  # fmt: skip
        self._lock = threading.Lock()
        self._total = self._progress.add_task(title, total=len(hosts))
        self._rows = {h: self._progress.add_task(f"  {h}: waiting", total=None) for h in hosts}
        self._done: set[str] = set()

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:  # fmt: skip
        self._progress.stop()

    def report(self, host: str, what: str) -> None:
        """Show ``what`` ``host`` is doing; a status of DONE counts the host once as finished."""
        with self._lock:
            if host not in self._rows:
                return
            self._progress.update(self._rows[host], description=f"  {host}: {what}")
            if what in DONE and host not in self._done:
                self._done.add(host)
                self._progress.advance(self._total)

    def lines(self) -> dict[str, str]:
        """What each host's line says now, and the run's bar as ``done/total`` under ``""``."""
        with self._lock:
            shown = {task.id: task for task in self._progress.tasks}
        total = shown[self._total]
        rows = {host: shown[row].description.strip() for host, row in self._rows.items()}
        return {"": f"{total.completed:.0f}/{total.total:.0f}", **rows}

    def task_started(self, task: Task) -> None:
        pass

    def task_completed(self, task: Task, result: AggregatedResult) -> None:
        pass

    def task_instance_started(self, task: Task, host: Host) -> None:
        self.report(host.name, task.name)

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        outcome = result[0].result if len(result) else None
        self.report(host.name, outcome.status if isinstance(outcome, HostOutcome) else "failed")

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        self.report(host.name, task.name)

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        if result.failed:
            self.report(host.name, f"{task.name} failed")


def summary_table(outcomes: Sequence[HostOutcome], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("host", "result", "changes", "reason", "seconds"):
        table.add_column(column, overflow="fold")
    for item in sorted(outcomes, key=lambda o: o.host):
        reason = item.reason + (f" (rolled back to {item.rolled_back})" if item.rolled_back else "")
        result = f"[{STYLE[item.status]}]{item.status}[/]"
        changes = "\n".join(item.actions) or "-"
        table.add_row(item.host, result, changes, reason or "-", f"{item.seconds:.1f}")
    return table


def totals(outcomes: Sequence[HostOutcome]) -> str:
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in DONE}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "skipped")


def print_summary(console: Console, outcomes: Sequence[HostOutcome], title: str) -> None:
    for item in outcomes:
        for diff in item.diffs:
            console.print(f"[bold]{item.host}[/]", highlight=False)
            console.print(diff, markup=False, highlight=False)
    console.print(summary_table(outcomes, title))
    console.print(totals(outcomes))
