"""Which tasks an agent may take, in which order, and which agent acts for the fleet.

Pure functions of a snapshot: the claim order (priority, then age), dependencies, and the
rendezvous matching that keeps agents from racing for one task (docs/state-protocol.md,
"Waking up and choosing").
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

from cluster.state.records import Claim, Heartbeat, Release
from cluster.state.snapshot import Snapshot, TaskView

INVALID_GRACE = 10.0  # others step in for the elected agent after this long
STAGGER = 0.3  # the least wait between places in a task's rendezvous line (pace.py)
LINE_WINDOW = 120.0  # agents heard from this recently stand in a task's rendezvous line


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


Turns = list[tuple[TaskView, float | None]]


def assigned(snap: Snapshot, me: str, candidates: list[TaskView],
             first_seen: Mapping[str, float], now: float,
             stagger: float = STAGGER) -> list[TaskView]:
    """The candidates ``me`` should try now (see :func:`turns`)."""
    return due(turns(snap, me, candidates, first_seen, now, stagger), now)


def due(ordered: Turns, now: float) -> list[TaskView]:
    """Those ``me`` owns, then the fallbacks whose turn came."""
    return ([task for task, at in ordered if at is None]
            + [task for task, at in ordered if at is not None and at <= now])


def later(ordered: Turns, now: float) -> dict[str, float]:
    """When each candidate owned by another becomes ours to try, for those that do later:
    the moments a waiting fallback reads the repo again unless told the task was claimed
    (waking every stagger instead cost every idle agent a read per stagger while any task
    waited anywhere, and waking at every turn a read for each task its owner had taken)."""
    return {task.key: at for task, at in ordered if at is not None and at > now}


def turns(snap: Snapshot, me: str, candidates: list[TaskView],
          first_seen: Mapping[str, float], now: float,
          stagger: float = STAGGER) -> Turns:
    """Each candidate with the moment ``me`` may try it: None for one it owns, else one stagger
    per agent ahead of ``me`` in its line after ``me`` first saw it.

    Each task is owned by the running agent serving its specialty, heard from within
    LINE_WINDOW, that ranks first for it in rendezvous order: decided for each task alone,
    from the set of agents only, so every agent names the same owner whatever else it sees
    (a matching that also spent each agent's free slots shifted whenever one agent's view of
    a claim or a heartbeat lagged another's, and agents raced). A task owned by another agent
    becomes claimable by the next agent in its order ``stagger`` seconds after it first saw
    it, by the one after after 2 x ``stagger`` and so on (cluster.agent.pace sizes it), so a
    busy or dead owner delays a task by a few staggers, not a lease.
    """
    others = line(snap, me, now)
    out: Turns = []
    for task in candidates:
        assert task.spec is not None
        ahead = place(others, me, task.key, task.spec.specialty,
                      lapsed_holder(snap, task.key, now))  # fmt: skip
        out.append((task, first_seen.get(task.key, now) + stagger * ahead if ahead else None))
    return out


def line(snap: Snapshot, me: str, now: float) -> dict[str, Heartbeat]:
    """The other agents that stand in tasks' lines: those that claim (a paused, blocked or
    draining one takes none), heard from within LINE_WINDOW, not only those online by the
    heartbeat rule: under load heartbeats lag, and an agent that dropped out of another's
    view would make both think themselves first."""
    return {hb.id: hb for hb in snap.agents.values()
            if hb.id != me and hb.state == "running" and now - hb.last_seen < LINE_WINDOW}


def place(others: Mapping[str, Heartbeat], me: str, key: str, specialty: str,
          lapsed: str | None = None) -> int:
    """How many of ``others`` (:func:`line`) serving ``specialty`` rank before ``me`` for
    ``key``: its place in the task's line, not among the agents ahead that look free (those
    views differ, and agents that each thought nobody free was ahead of them all stepped in
    at once); 0 is the owner."""
    mine = rank(key, me)
    return sum(1 for a, hb in others.items()
               if a != lapsed and specialty in hb.specialties and rank(key, a) < mine)


def lapsed_holder(snap: Snapshot, key: str, now: float) -> str | None:
    """The agent whose lease on ``key`` ran out, if it did: it leaves that task's line, so
    the task is taken over at once rather than a stagger later (the holder, frozen or cut
    off, would otherwise still own it while its heartbeat is recent, and might come back to
    renew a lease nobody took)."""
    view = snap.claims.get(key)
    record = view.record if view is not None else None
    if isinstance(record, Claim) and snap.state(key, now) == "stale":
        return record.agent
    return None


def fold_turn(snap: Snapshot, me: str, now: float) -> float:
    """When ``me`` folds the finished tasks (inf if none are). A fold is due once the oldest
    result is ``fold_delay_seconds`` old, or once ``fold_batch`` results are in; the online
    agents take it in turns, the first then, the next one delay later, and so on: an agent
    that is gone or slow costs a delay, not a fold push (and a read to decide on it) by every
    agent at once, and a refused push is a push too. The order is the rendezvous order for
    the oldest result's task, which every reader that sees it names alike (main's commit,
    used before, moves with every landing and fold, and agents that had read different
    commits each found themselves first)."""
    finished = sorted((snap.claims[k].finished_at or now, k) for k in snap.terminal_keys())
    if not finished:
        return float("inf")
    settings = snap.settings
    at = finished[0][0] + settings.fold_delay_seconds
    if len(finished) >= settings.fold_batch:
        at = min(at, finished[settings.fold_batch - 1][0])
    return at + in_turn(snap, me, finished[0][1], now).index(me) * settings.fold_delay_seconds


def in_turn(snap: Snapshot, me: str, key: str, now: float) -> list[str]:
    """The online agents and ``me``, in rendezvous order for ``key``: who acts for the fleet
    on it first, second..."""
    online = {hb.id for hb in snap.online_agents(now)} | {me}
    return sorted(online, key=lambda agent: rank(key, agent))


def elected(snap: Snapshot, me: str, key: str, since: float, now: float) -> bool:
    """Is ``me`` the online agent that acts on ``key`` (or has everybody waited long enough)?"""
    return in_turn(snap, me, key, now)[0] == me or now - since > INVALID_GRACE
