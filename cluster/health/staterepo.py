"""The state repo as health sees it: pending work, stale claims, invalid tasks, heartbeats."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path

from cluster.errors import ClusterError
from cluster.health.model import AgentView, PausedGroup, StaleClaim, StateFacts
from cluster.state.gitcmd import run_git
from cluster.state.gitobj import ObjectStore
from cluster.state.localrefs import read_refs
from cluster.state.records import Claim, Heartbeat, Result, stamp
from cluster.state.remote import FETCH_SPECS, LS_REMOTE_PATTERNS, REF_PATTERNS, local_path
from cluster.state.snapshot import Reader, Snapshot

PENDING = ("pending", "released", "waiting")


def read_state_facts(url: str, work_dir: Path, ssh_command: str | None = None) -> StateFacts:
    """Read the repo once (ls-remote, fetch only what changed); never raises for a bad remote."""
    try:
        snap = _snapshot(url, work_dir, {"GIT_SSH_COMMAND": ssh_command} if ssh_command else {})
    except ClusterError as exc:
        return StateFacts(url, error=_short(str(exc)))
    return summarise(url, snap, time.time())


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


def _snapshot(url: str, work_dir: Path, env: Mapping[str, str]) -> Snapshot:
    path = local_path(url)
    if path is not None:
        if not (path / "HEAD").exists():
            raise ClusterError(f"{url} is not a git repository")
        store = ObjectStore(path)
        refs = read_refs(path, REF_PATTERNS)
    else:
        key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:12]
        mirror = work_dir / "health" / f"{key}.git"
        refs = _sync_mirror(url, mirror, env)
        store = ObjectStore(mirror)
    try:
        return Reader(store).read(refs)
    finally:
        store.close()


def _sync_mirror(url: str, mirror: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Remote refs by ls-remote; a fetch only when one points at an object the mirror lacks."""
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(mirror)])
    done = run_git(["ls-remote", url, *LS_REMOTE_PATTERNS], git_dir=mirror, timeout=30, env=env)
    refs = {ref: sha for sha, _, ref in (line.partition("\t") for line in done.stdout.splitlines())}
    if refs:
        check = run_git(["cat-file", "--batch-check"], git_dir=mirror, check=False,
                        input_text="\n".join(refs.values()) + "\n")  # fmt: skip
        if "missing" in check.stdout:
            run_git(["fetch", "--quiet", "--prune", "--no-tags", url, *FETCH_SPECS],
                    git_dir=mirror, timeout=120, env=env)  # fmt: skip
    return refs


def _short(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-300:] or "unreadable"
