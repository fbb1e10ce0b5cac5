"""Summaries of a snapshot for people and scripts: task rows, agent rows, fleet status."""

from __future__ import annotations

import time
from typing import Any

from cluster.state.records import Claim, Release, Result, stamp
from cluster.state.snapshot import Snapshot
from cluster.state.statuses import TERMINAL

TASK_STATES = ("pending", "claimed", *TERMINAL, "replayed")


def _bucket(state: str) -> str:
    return {"released": "pending", "stale": "claimed", "waiting": "pending"}.get(state, state)


def task_row(snap: Snapshot, key: str, now: float) -> dict[str, Any]:
    task = snap.tasks.get(key)
    state = snap.state(key, now)
    row: dict[str, Any] = {"id": key, "state": state}
    spec = task.spec if task is not None else snap.archived_spec(key)
    if spec is not None:
        row.update(title=spec.title, specialty=spec.specialty, priority=spec.priority.value,
                   repo=spec.repo)
    if task is not None:
        row["path"] = task.path
        row["added_at"] = stamp(task.added_at)
        if task.error:
            row["error"] = task.error
    view = snap.claims.get(key)
    record: Claim | Release | Result | None = view.record if view else snap.result(key)
    if isinstance(record, Claim):
        row.update(agent=record.agent, attempt=record.attempt, expires_at=stamp(record.expires_at))
    elif isinstance(record, Release):
        row.update(agent=record.agent, attempt=record.attempt, reason=record.reason,
                   retry_at=stamp(record.not_before))
    elif isinstance(record, Result):
        row.update(status=record.status, agent=record.agent, attempt=record.attempt,
                   reason=record.reason, duration_s=record.duration_s,
                   pull_request=record.pull_request, cost_usd=record.cost_usd,
                   input_tokens=record.input_tokens, output_tokens=record.output_tokens)
    if state == "replayed":  # the file is what is refused; the fields above are its first run
        row["reason"] = snap.replay_reason(key)
    return row


def task_rows(snap: Snapshot, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    keys = set(snap.tasks) | set(snap.claims) | set(snap.archived)
    return [task_row(snap, key, now) for key in sorted(keys)]


def status(snap: Snapshot, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    counts = dict.fromkeys(TASK_STATES, 0)
    counts["stale"] = 0
    for row in task_rows(snap, now):
        if row["state"] == "stale":
            counts["stale"] += 1
        bucket = _bucket(row["state"])
        counts[bucket] = counts.get(bucket, 0) + 1
    agents: list[dict[str, Any]] = []
    for hb in sorted(snap.agents.values(), key=lambda h: h.id):
        agent: dict[str, Any] = {
            "id": hb.id, "host": hb.host, "online": hb.online(now), "state": hb.state,
            "specialties": list(hb.specialties), "capacity": hb.max_tasks,
            "tasks": list(hb.holding), "last_seen": stamp(hb.last_seen),
            "last_seen_age_s": round(now - hb.last_seen, 1), "version": hb.version,
            "credentials": list(hb.credentials), "reason": hb.reason,
        }
        if hb.paused_until is not None and hb.paused_until > now:
            agent.update(paused_until=stamp(hb.paused_until), paused_by=hb.paused_by,
                       paused_for=hb.paused_for,
                       resumes_in_s=round(hb.paused_until - now, 1))
        agents.append(agent)
    online = sum(1 for a in agents if a["online"])
    return {
        "main": snap.main,
        "agents": {"total": len(agents), "online": online, "offline": len(agents) - online},
        "tasks": counts,
        "agent_detail": agents,
        "paused": paused_fleet(agents),
        # Ids folds archived in main's history that archive/ no longer holds (rewritten).
        "unarchived": snap.unarchived(),
    }


def human_duration(seconds: float) -> str:
    """4s, 12m, 3h05m, 6d02h: a far-off resume stays readable."""
    left = max(0, int(seconds))
    if left < 120:
        return f"{left}s"
    if left < 7200:
        return f"{left // 60}m"
    if left < 2 * 86400:
        return f"{left // 3600}h{left % 3600 // 60:02d}m"
    return f"{left // 86400}d{left % 86400 // 3600:02d}h"


def paused_fleet(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The online agents waiting out a usage window, one entry per credential (fingerprint)
    and end: who met the limit, who waits, when they resume."""
    groups: dict[tuple[str | None, str], dict[str, Any]] = {}
    for row in agents:
        if not row["online"] or "paused_until" not in row:
            continue
        key = (row["paused_for"], row["paused_until"])
        group = groups.setdefault(key, {
            "credential": row["paused_for"], "until": row["paused_until"],
            "resumes_in_s": row["resumes_in_s"], "met_by": row["paused_by"],
            "reason": row["reason"], "agents": []})
        group["agents"].append(row["id"])
    return sorted(groups.values(), key=lambda g: (g["until"], g["credential"] or ""))
