"""The JSON shapes of the API (docs/api.md), each a pure function of one snapshot and a time.

``/api/cluster/status`` is ``claude-cluster status --json`` (cluster.state.report.status)
in the dashboard's names, with what the page needs besides: node states, stale claims,
invalid task files.
"""

from __future__ import annotations

from typing import Any

from cluster.agent.choose import dependency_verdict
from cluster.state.records import Claim, Release, stamp
from cluster.state.report import task_row
from cluster.state.snapshot import Snapshot
from cluster.state.statuses import TERMINAL

ROW_FIELDS = ("id", "title", "specialty", "priority", "labels", "state", "attempt", "agent",
              "added_at", "finished_at", "pull_request", "cost_usd", "input_tokens",
              "output_tokens")
PENDING_STATES = ("pending", "released", "waiting")


def node_status(agent: dict[str, Any]) -> str:
    """online, offline, or the state an online agent says it is in (paused, blocked...)."""
    if agent["state"] == "stopped":
        return "stopped"
    if not agent["online"]:
        return "offline"
    return "online" if agent["state"] == "running" else str(agent["state"])


def node_detail(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "node_id": agent["id"], "host": agent["host"], "status": node_status(agent),
        "online": agent["online"], "state": agent["state"],
        "specialties": agent["specialties"], "capacity": agent["capacity"],
        "tasks": agent["tasks"], "last_seen": agent["last_seen"],
        "last_seen_age_s": agent["last_seen_age_s"],
        "paused_until": agent.get("paused_until"), "paused_by": agent.get("paused_by"),
        "paused_for": agent.get("paused_for"), "resumes_in_s": agent.get("resumes_in_s"),
        "reason": agent["reason"], "version": agent["version"],
        "credentials": agent["credentials"],
    }


def stale_claims(snap: Snapshot, now: float) -> list[dict[str, Any]]:
    out = []
    for key, view in sorted(snap.claims.items()):
        record = view.record
        if isinstance(record, Claim) and snap.state(key, now) == "stale":
            out.append({"task": key, "agent": record.agent, "attempt": record.attempt,
                        "expires_at": stamp(record.expires_at),
                        "expired_for_s": round(now - record.expires_at, 1)})
    return out


def invalid_tasks(snap: Snapshot) -> list[dict[str, Any]]:
    out = [{"task": key, "path": view.path, "reason": view.error}
           for key, view in sorted(snap.tasks.items()) if view.error]
    out += [{"task": key, "path": snap.tasks[key].path, "reason": reason}
            for key, reason in sorted(snap.replayed().items())]
    return out


def cluster_status(snap: Snapshot, report: dict[str, Any], now: float) -> dict[str, Any]:
    """``report`` (cluster.state.report.status of ``snap`` at ``now``) as the API gives it."""
    counts: dict[str, int] = dict(report["tasks"])
    tasks = {"total": sum(v for k, v in counts.items() if k != "stale"),
             "active": counts.get("claimed", 0),
             "completed": sum(counts.get(k, 0) for k in TERMINAL), **counts}
    return {
        "nodes": dict(report["agents"]),
        "tasks": tasks,
        "node_details": [node_detail(agent) for agent in report["agent_detail"]],
        "paused": report["paused"],
        "invalid": invalid_tasks(snap),
        "stale": stale_claims(snap, now),
        "unarchived": report["unarchived"],
        "main": snap.main,
        "read_at": stamp(snap.taken_at),
        "computed_at": stamp(now),
    }


def api_row(snap: Snapshot, key: str, now: float) -> dict[str, Any]:
    """:func:`cluster.state.report.task_row` with every field of the API's row present."""
    row = task_row(snap, key, now)
    spec = snap.tasks[key].spec if key in snap.tasks else snap.archived_spec(key)
    row["labels"] = list(spec.labels) if spec is not None else []
    row["finished_at"] = _finished_at(snap, key)
    for name in ROW_FIELDS:
        row.setdefault(name, None)
    return row


def _finished_at(snap: Snapshot, key: str) -> str | None:
    view = snap.claims.get(key)
    if view is not None:
        when = view.finished_at
        return stamp(when) if when is not None else None
    result = snap.result(key)
    if result is not None and result.finished_at is not None:
        return stamp(result.finished_at)
    return None


def task_keys(snap: Snapshot) -> list[str]:
    """Every task a reader knows, as cluster.state.report.task_rows lists them."""
    return sorted(set(snap.tasks) | set(snap.claims) | set(snap.archived))


def filtered(rows: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    """The rows matching ``state``, ``specialty`` and ``label`` (each optional)."""
    state, specialty, label = (query.get(k) for k in ("state", "specialty", "label"))
    return [row for row in rows
            if (not state or row["state"] == state)
            and (not specialty or row["specialty"] == specialty)
            and (not label or label in row["labels"])]


def queue_status(snap: Snapshot, rows: list[dict[str, Any]], now: float) -> dict[str, Any]:
    pending = [row for row in rows if row["state"] in PENDING_STATES]
    by_specialty: dict[str, int] = {}
    claimable = waiting = 0
    for row in pending:
        by_specialty[row["specialty"] or "?"] = by_specialty.get(row["specialty"] or "?", 0) + 1
        task = snap.tasks.get(row["id"])
        if task is None or task.spec is None:
            continue
        view = snap.claims.get(row["id"])
        if view is not None and isinstance(view.record, Release) and view.record.not_before > now:
            continue  # backing off before its retry
        verdict = dependency_verdict(snap, task)
        if verdict is None:
            claimable += 1
        elif verdict == "wait":
            waiting += 1
    ages = [now - snap.tasks[row["id"]].added_at for row in pending if row["id"] in snap.tasks]
    return {"pending": len(pending), "by_specialty": dict(sorted(by_specialty.items())),
            "oldest_pending_age_s": round(max(ages), 1) if ages else None,
            "claimable_now": claimable, "waiting_on_dependencies": waiting}


def task_spec(snap: Snapshot, key: str) -> dict[str, Any] | None:
    """The task's fields as its YAML file gives them (validated), or None."""
    spec = snap.tasks[key].spec if key in snap.tasks else snap.archived_spec(key)
    return spec.model_dump(mode="json") if spec is not None else None
