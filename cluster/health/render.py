"""Fleet health for people (a rich table, coloured, one verdict line) and scripts (JSON).

The table fits a terminal (long cells fold); off one, or with ``wide``, it prints at its
natural width so no cell is cut (cluster.console decides).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cluster.console import print_fitted
from cluster.health.model import FleetHealth, HostHealth

COLOUR = {"healthy": "green", "degraded": "yellow", "down": "red", "note": "cyan"}


def table(fleet: FleetHealth) -> Table:
    grid = Table(title="claude-cluster health", title_justify="left", expand=False)
    for column in ("host", "status", "service", "restarts", "release", "claude-code",
                   "disk free", "mem avail", "load", "heartbeat", "tasks", "findings"):  # fmt: skip
        grid.add_column(column, overflow="fold")
    for host in fleet.hosts:
        grid.add_row(*_row(host))
    return grid


def _row(host: HostHealth) -> list[str]:
    facts, probe, agent = host.facts, host.facts.probe, host.facts.agent
    status = f"[{COLOUR[host.status]}]{host.status}[/]"
    findings = "; ".join(f"[{COLOUR[f.level]}]{escape(f.text)}[/]" for f in host.findings) or "-"
    cells = ["-"] * 7
    if probe is not None:
        cli = probe.claude_code
        cells = [
            probe.service,
            str(probe.restarts),
            probe.release or "-",
            "-" if cli is None else cli or "missing",
            f"{probe.disk_free / 1e9:.1f} GB",
            f"{100 * probe.mem_available / max(probe.mem_total, 1):.0f}%",
            f"{probe.load1:.2f}/{probe.cpus}",
        ]
    beat, tasks = "-", "-"
    if agent is not None:
        beat = "none" if agent.heartbeat_age is None else f"{agent.heartbeat_age:.0f}s ago"
        tasks = str(len(agent.holding)) + (f" (+{len(agent.expired)} expired)"
                                           if agent.expired else "")  # fmt: skip
    if probe is not None and probe.metrics:
        tasks += f", {probe.metrics.get('tasks_running', 0):.0f} running"
    return [facts.name, status, *cells, beat, tasks, findings]


def print_health(console: Console, fleet: FleetHealth, *, wide: bool = False) -> None:
    print_fitted(console, [table(fleet), *_summary_lines(fleet)], wide=wide)


def _summary_lines(fleet: FleetHealth) -> list[str]:
    """The state repo's line, its findings and the verdict, as console markup."""
    lines = []
    state = fleet.state
    if state is None:
        lines.append("state repo: [yellow]not checked[/] (hosts name several; use --state-url)")
    else:
        facts = state.facts
        line = f"state repo {escape(str(facts.url))}: [{COLOUR[state.status]}]{state.status}[/]"
        if facts.reachable:
            oldest = facts.oldest_pending_age
            line += (f", {facts.pending} pending" + (f" (oldest {oldest:.0f}s)" if oldest else "")
                     + f", {len(facts.stale)} stale claim(s), {len(facts.invalid)} invalid")
        lines.append(line)
        lines += [f"  [{COLOUR[f.level]}]{escape(f.text)}[/]" for f in state.findings]
    lines.append(f"[bold {COLOUR[fleet.status]}]{escape(fleet.verdict)}[/]")
    return lines


def as_json(fleet: FleetHealth) -> str:
    body: dict[str, Any] = dataclasses.asdict(fleet)
    body["exit_code"] = fleet.exit_code
    return json.dumps(body, indent=2, sort_keys=True, default=str)
