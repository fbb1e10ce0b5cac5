"""Which tasks an agent may take, in which order, and which agent acts for the fleet.

Pure functions of a snapshot: the claim order (priority, then age), dependencies, and the
rendezvous matching that keeps agents from racing for one task (docs/state-protocol.md,
"Waking up and choosing").
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

from cluster.state.records import Release
from cluster.state.snapshot import Snapshot, TaskView

INVALID_GRACE = 10.0  # others step in for the elected agent after this long
STAGGER = 0.3  # the next agent in rendezvous order may take a task after this long


def rank(key: str, agent: str) -> int:
    """Rendezvous hashing: every agent ranks (task, agent) pairs the same way."""
    return int.from_bytes(hashlib.blake2b(f"{key}/{agent}".encode(), digest_size=8).digest())


def dependency_verdict(snap: Snapshot, task: TaskView) -> str | None:
    """None when runnable, 'wait' while dependencies run, else why the task cannot run."""
    assert task.spec is not None
    for dep in task.spec.depends_on:
        result = snap.result(dep)
        if result is None:
            if not snap.known(dep):
                return f"depends_on names unknown task {dep!r}"
            return "wait"
        if result.status != "succeeded":
            return f"dependency {dep!r} ended {result.status}"
    return None


def claimable(snap: Snapshot, specialties: Collection[str], busy: Collection[str],
              now: float) -> list[TaskView]:
    """Tasks an agent serving ``specialties`` may claim now, best first."""
    out = []
    for task in snap.tasks.values():
        if task.spec is None or task.spec.specialty not in specialties or task.key in busy:
            continue
        state = snap.state(task.key, now)
        if state == "released":
            record = snap.claims[task.key].record
            assert isinstance(record, Release)
            if record.not_before > now:
                continue
        elif state not in ("pending", "stale"):
            continue
        if dependency_verdict(snap, task) is None:
            out.append(task)
    out.sort(key=lambda t: (-t.spec.priority.rank if t.spec else 0, t.added_at, t.key))
    return out


def assigned(snap: Snapshot, me: str, specialties: Collection[str], free: int,
             candidates: list[TaskView], first_seen: Mapping[str, float],
             now: float) -> list[TaskView]:
    """The candidates ``me`` should try now: those matched to it, then fallbacks.

    Every agent computes the same matching of the top candidates to the online agents with
    free slots, so they rarely race. A task matched to another agent becomes claimable by the
    next agent in its rendezvous order after STAGGER seconds, the one after after 2 x STAGGER,
    and so on: a busy or dead agent delays a task by a fraction of a second, not a lease.
    """
    # Only agents that claim get tasks matched: a paused, blocked or draining one takes none.
    slots = {hb.id: max(0, hb.max_tasks - len(hb.holding))
             for hb in snap.online_agents(now) if hb.id != me and hb.state == "running"}
    slots[me] = free
    serves = {hb.id: set(hb.specialties) for hb in snap.agents.values()}
    serves[me] = set(specialties)
    mine: list[TaskView] = []
    late: list[TaskView] = []
    for task in candidates:
        assert task.spec is not None
        specialty = task.spec.specialty
        able = [a for a, n in slots.items() if n > 0 and specialty in serves[a]]
        best = min(able, key=lambda a: rank(task.key, a)) if able else None
        if best is not None:
            slots[best] -= 1
        if best == me:
            mine.append(task)
            continue
        line = sorted((a for a in serves if specialty in serves[a]),
                      key=lambda a: rank(task.key, a))
        position = line.index(me) if me in line else len(line)
        if now - first_seen.get(task.key, now) >= STAGGER * max(1, position):
            late.append(task)
    return mine + late


def elected(snap: Snapshot, me: str, key: str, since: float, now: float) -> bool:
    """Is ``me`` the online agent that acts on ``key`` (or has everybody waited long enough)?"""
    online = [hb.id for hb in snap.online_agents(now)]
    if me not in online:
        online.append(me)
    return min(online, key=lambda agent: rank(key, agent)) == me or now - since > INVALID_GRACE
