"""Rich tables for the CLI's human output; JSON output bypasses this module.

Ids fold rather than being cut when a terminal is narrow; off a terminal (or ``wide``) the
tables print at their natural width (cluster.console decides).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from cluster.console import print_fitted
from cluster.state.report import human_duration
from cluster.state.statuses import AgentState

STATE_STYLE = {
    "succeeded": "green", "failed": "red", "invalid": "magenta", "cancelled": "yellow",
    "timed_out": "red", "claimed": "cyan", "stale": "bold yellow", "pending": "white",
    "released": "white", "replayed": "bold magenta",
}


def task_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="tasks")
    for name in ("id", "state", "specialty", "priority", "agent", "attempt", "detail"):
        table.add_column(name, overflow="fold")
    for row in rows:
        style = STATE_STYLE.get(row["state"], "")
        detail = row.get("pull_request") or row.get("reason") or row.get("error") or ""
        table.add_row(
            row["id"], f"[{style}]{row['state']}[/]" if style else row["state"],
            row.get("specialty", ""), row.get("priority", ""), row.get("agent", ""),
            str(row.get("attempt", "")), str(detail)[:80],
        )
    return table


def status_tables(report: dict[str, Any]) -> list[Table]:
    counts = Table(title="tasks by state")
    for name in report["tasks"]:
        counts.add_column(name, justify="right", overflow="fold")
    counts.add_row(*(str(v) for v in report["tasks"].values()))
    agents = Table(title=(
        f"agents: {report['agents']['total']} total, {report['agents']['online']} online, "
        f"{report['agents']['offline']} offline"
    ))
    for name in ("id", "host", "online", "state", "specialties", "capacity", "tasks", "last seen",
                 "detail"):
        agents.add_column(name, overflow="fold")
    for agent in report["agent_detail"]:
        agents.add_row(
            agent["id"], agent["host"], "[green]yes[/]" if agent["online"] else "[red]no[/]",
            AGENT_STYLE.get(agent["state"], "{}").format(agent["state"]),
            ",".join(agent["specialties"]), str(agent["capacity"]),
            ",".join(agent["tasks"]) or "-", f"{agent['last_seen_age_s']}s ago",
            _agent_detail(agent),
        )
    tables = [counts, agents]
    if report.get("paused"):
        paused = Table(title="paused for a usage window (every agent sharing the credential)")
        for name in ("credential", "agents", "met by", "resumes at", "in", "reason"):
            paused.add_column(name, overflow="fold")
        for group in report["paused"]:
            paused.add_row(
                str(group["credential"] or "(own)")[:24], ",".join(group["agents"]),
                str(group["met_by"] or "-"), group["until"], human_duration(group["resumes_in_s"]),
                str(group["reason"] or "")[:80],
            )
        tables.append(paused)
    if report.get("unarchived"):
        lost = Table(title=f"archive rewritten: {len(report['unarchived'])} task(s) archived by "
                           "folds in main's history are missing from archive/")
        lost.add_column("id", overflow="fold")
        for key in report["unarchived"]:
            lost.add_row(key)
        tables.append(lost)
    return tables


AGENT_STYLE: dict[AgentState, str] = {
    "paused": "[yellow]{}[/]", "blocked": "[bold red]{}[/]", "stopped": "[red]{}[/]",
}


def _agent_detail(agent: dict[str, Any]) -> str:
    if agent["state"] == "blocked":
        return f"blocked: {agent.get('reason') or 'credential refused'}"[:100]
    if "paused_until" in agent:
        by = agent.get("paused_by")
        source = f" (limit met by {by})" if by and by != agent["id"] else ""
        return (f"paused until {agent['paused_until']}{source}, resumes in "
                f"{human_duration(agent['resumes_in_s'])}")
    return ""


def print_tables(tables: list[Table], *, wide: bool = False,
                 console: Console | None = None) -> None:  # fmt: skip
    """Print to stdout: fitted to a terminal, else (or with ``wide``) with no cell cut."""
    print_fitted(console or Console(), tables, wide=wide)
