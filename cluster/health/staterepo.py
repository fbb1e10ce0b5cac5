"""The state repo as health sees it: pending work, stale claims, invalid tasks, heartbeats."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from cluster.errors import ClusterError
from cluster.health.model import AgentView, PausedGroup, StaleClaim, StateFacts
from cluster.state.gitcmd import run_git
from cluster.state.records import Claim, Heartbeat, Result, stamp
from cluster.state.remote import StateRemote, local_path
from cluster.state.snapshot import Reader, Snapshot

PENDING = ("pending", "released", "waiting")
HOUR = 3600.0


def read_state_facts(url: str, work_dir: Path, ssh_command: str | None = None) -> StateFacts:
    """Read the repo once (one fetch of what changed); never raises for a bad remote."""
    env = {"GIT_SSH_COMMAND": ssh_command} if ssh_command else None
    try:
        remote = _open(url, work_dir, env)
    except ClusterError as exc:
        return StateFacts(url, error=_short(str(exc)))
    with closing(remote):  # after summarise: a result is read from the store on demand
        try:
            snap = Reader(remote.store).read(remote.refs())
        except ClusterError as exc:
            return StateFacts(url, error=_short(str(exc)))
        now = time.time()
        facts = summarise(url, snap, now)
        if not snap.settings.hosted:
            return facts
        try:
            pushes = pushes_last_hour(remote, snap, now)
        except ClusterError:
            pushes = None
        return dataclasses.replace(facts, push_budget=snap.settings.push_budget_per_minute,
                                   pushes_last_hour=pushes)


def pushes_last_hour(remote: StateRemote, snap: Snapshot, now: float) -> int:
    """The pushes the state repo took in the hour before ``now``, from what it holds: every
    commit with a committer time in that hour on main (submits, folds) and on the claim chains
    (claims, releases, results; folded chains too), each one push, plus the heartbeats and
    renewals (replaced in place, leaving no commit each) that every heartbeat written in the
    hour counts in ``beats_hour``. Refused pushes leave nothing and are not counted."""
    since = now - HOUR
    tips = sorted({sha for sha in (snap.main, *(v.tip for v in snap.claims.values())) if sha})
    commits = 0
    if tips:
        listing = run_git(["rev-list", f"--since={int(since)}", "--format=%ct", *tips],
                          git_dir=remote.mirror).stdout  # fmt: skip
        commits = sum(1 for line in listing.splitlines()
                      if not line.startswith("commit ") and int(line) >= since)
    beats = sum(hb.beats_hour for hb in snap.agents.values() if hb.last_seen >= since)
    return commits + beats


def _open(url: str, work_dir: Path, env: Mapping[str, str] | None) -> StateRemote:
    """The state remote as every reader opens it, health's mirror under ``work_dir/health``."""
    path = local_path(url)
    if path is not None and not (path / "HEAD").exists():
        raise ClusterError(f"{url} is not a git repository")
    return StateRemote(url, work_dir / "health", env)


def summarise(url: str, snap: Snapshot, now: float) -> StateFacts:
    """The facts health needs of a snapshot (pure, given ``now``)."""
    pending = [t for k, t in snap.tasks.items() if snap.state(k, now) in PENDING and t.spec]
    stale: list[StaleClaim] = []
    held: dict[str, list[str]] = {}
    expired: dict[str, list[str]] = {}
    for key, view in sorted(snap.claims.items()):
        record = view.record
        if not isinstance(record, Claim):
            continue
        if snap.state(key, now) == "stale":
            stale.append(StaleClaim(key, record.agent, now - record.expires_at))
            expired.setdefault(record.agent, []).append(key)
        else:
            held.setdefault(record.agent, []).append(key)
    invalid = {k for k, t in snap.tasks.items() if t.error is not None}
    invalid |= {k for k, v in snap.claims.items()
                if isinstance(v.record, Result) and v.record.status == "invalid"}  # fmt: skip
    invalid |= set(snap.replayed())  # files whose id already ran: a person must remove them
    agents: dict[str, AgentView] = {}
    for name in set(snap.agents) | set(held) | set(expired):
        beat = snap.agents.get(name)
        pause = beat if beat is not None and _pausing(beat, now) else None
        agents[name] = AgentView(
            heartbeat_age=None if beat is None else max(0.0, now - beat.last_seen),
            heartbeat_seconds=beat.heartbeat_seconds if beat else 0.0,
            state=beat.state if beat else None,
            metrics_port=beat.metrics_port if beat else None,
            sandbox=beat.sandbox if beat else "bwrap",
            holding=tuple(held.get(name, ())),
            expired=tuple(expired.get(name, ())),
            reason=beat.reason if beat else None,
            paused_until=stamp(pause.paused_until) if pause and pause.paused_until else None,
            resumes_in=round(pause.paused_until - now, 1) if pause and pause.paused_until
            else None,
            paused_by=pause.paused_by if pause else None,
        )
    oldest = min((t.added_at for t in pending), default=None)
    return StateFacts(url, None, len(pending), None if oldest is None else now - oldest,
                      tuple(stale), tuple(sorted(invalid)), agents,
                      _paused_groups(snap, now))  # fmt: skip


def _pausing(beat: Heartbeat, now: float) -> bool:
    return beat.paused_until is not None and beat.paused_until > now


def _paused_groups(snap: Snapshot, now: float) -> tuple[PausedGroup, ...]:
    """Online agents waiting out a usage window, grouped by credential and end."""
    groups: dict[tuple[str | None, float], list[Heartbeat]] = {}
    for beat in snap.agents.values():
        if beat.online(now) and _pausing(beat, now) and beat.paused_until is not None:
            groups.setdefault((beat.paused_for, beat.paused_until), []).append(beat)
    return tuple(
        PausedGroup(credential, stamp(until), round(until - now, 1), beats[0].paused_by,
                    tuple(sorted(b.id for b in beats)))
        for (credential, until), beats in sorted(groups.items(), key=lambda g: g[0][1]))


def _short(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-300:] or "unreadable"
