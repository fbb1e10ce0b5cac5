"""Rich output of a run: a Nornir processor drawing live per-host progress, the summary table."""

from __future__ import annotations

import types
from collections.abc import Sequence

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Task
from rich.console import Console
from rich.table import Table

from cluster.console import StepProgress, print_fitted
from cluster.deploy.outcome import HostOutcome

STYLE = {"changed": "yellow", "ok": "green", "failed": "bold red", "skipped": "magenta"}
DONE = ("changed", "ok", "failed", "skipped")


class LiveProgress:
    """A Nornir processor: a bar for the run and one line per host saying what it is doing.

    Nornir's events draw it all: a host's task starting (its name), each of its steps (the
    subtasks hostrun runs: connect, facts, plan, each action, verify...) and its end (the
    HostOutcome's status).
    Use it as a context manager around the runs; the display is drawn live only on a terminal,
    and off one each host that ends prints a plain ``[i/n] host ... status (s)`` line
    (cluster.console.StepProgress draws both).
    """

    def __init__(self, console: Console, hosts: Sequence[str], title: str) -> None:
        self._progress = StepProgress(console, title, rows=hosts)

    def __enter__(self) -> LiveProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:  # fmt: skip
        self._progress.__exit__(kind, exc, tb)

    def report(self, host: str, what: str) -> None:
        """Show ``what`` ``host`` is doing; a status of DONE counts the host once as finished."""
        if what in DONE:
            self._progress.finish(host, what)
        else:
            self._progress.show(host, what)

    def lines(self) -> dict[str, str]:
        """What each host's line says now, and the run's bar as ``done/total`` under ``""``."""
        return self._progress.lines()

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
    print_fitted(console, [summary_table(outcomes, title), totals(outcomes)])
