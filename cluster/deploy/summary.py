"""Rich output of a run: live per-host progress and the per-host summary table."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cluster.deploy.outcome import HostOutcome
from cluster.deploy.outcome import Progress as Report

STYLE = {"changed": "yellow", "ok": "green", "failed": "bold red", "skipped": "magenta"}
DONE = ("changed", "ok", "failed", "skipped")


@contextmanager
def live_progress(console: Console, hosts: Sequence[str], title: str) -> Iterator[Report]:
    """A bar for the run and one line per host saying what it is doing; yields the reporter."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    progress = Progress(*columns, console=console, transient=True,
                        disable=not console.is_terminal)  # fmt: skip
    lock = threading.Lock()
    with progress:
        total = progress.add_task(title, total=len(hosts))
        rows = {h: progress.add_task(f"  {h}: waiting", total=None) for h in hosts}

        def report(host: str, what: str) -> None:
            with lock:
                if host in rows:
                    progress.update(rows[host], description=f"  {host}: {what}")
                    if what in DONE:
                        progress.advance(total)

        yield report


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
