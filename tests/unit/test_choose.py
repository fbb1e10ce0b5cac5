"""Claim order and the rendezvous matching, on snapshots built by hand."""

from __future__ import annotations

import time
from typing import Any

from cluster.agent.choose import (
    STAGGER,
    assigned,
    claimable,
    elected,
    fold_turn,
    later,
    rank,
    turns,
)
from cluster.state.records import Claim, Heartbeat, Result
from cluster.state.schema import TaskSpec
from cluster.state.settings import RepoSettings
from cluster.state.snapshot import ClaimView, Snapshot, TaskView


def task(key: str, priority: str = "medium", added: float = 0.0, **extra: Any) -> TaskView:
    spec = TaskSpec.model_validate({"id": key, "title": key, "specialty": "backend",
                                    "repo": "a/b", "priority": priority, **extra})
    return TaskView(key, f"tasks/{key}.yaml", "0" * 40, spec, None, added)


def beat(agent: str, now: float, holding: tuple[str, ...] = ()) -> Heartbeat:
    return Heartbeat(id=agent, host="h", pid=1, version="0", specialties=("backend",),
                     max_tasks=1, holding=holding, state="running", started_at=now,
                     last_seen=now, heartbeat_seconds=5.0)


def snapshot(tasks: list[TaskView], agents: list[Heartbeat]) -> Snapshot:
    return Snapshot(main=None, settings=RepoSettings(), tasks={t.key: t for t in tasks},
                    archived={}, claims={}, agents={a.id: a for a in agents},
                    taken_at=time.time(), store=None)  # type: ignore[arg-type]


def test_priority_then_age_then_id() -> None:
    snap = snapshot([task("b", added=2), task("a", added=2), task("c", "critical", added=9),
                     task("d", "low", added=0)], [])
    order = [t.key for t in claimable(snap, {"backend"}, set(), time.time())]
    assert order == ["c", "a", "b", "d"]


def test_waiting_dependencies_are_not_claimable() -> None:
    snap = snapshot([task("base"), task("after", depends_on=["base"])], [])
    assert [t.key for t in claimable(snap, {"backend"}, set(), time.time())] == ["base"]


def test_agents_get_disjoint_matches_and_fallbacks_are_staggered() -> None:
    now = time.time()
    agents = [f"agent-{n}" for n in range(8)]
    tasks = [task(f"t{n}") for n in range(8)]
    snap = snapshot(tasks, [beat(a, now) for a in agents])
    candidates = claimable(snap, {"backend"}, set(), now)
    seen = {t.key: now for t in candidates}
    picks = {a: [t.key for t in assigned(snap, a, candidates, seen, now)]
             for a in agents}
    chosen = [k for keys in picks.values() for k in keys]
    assert sorted(chosen) == sorted(t.key for t in tasks)  # each task to exactly one agent
    # Much later, everybody may step in for everything (the matched agents never claimed).
    later = now + STAGGER * (len(agents) + 1)
    for agent in agents:
        late = assigned(snap, agent, candidates, seen, later)
        assert len(late) == len(tasks)


def test_exactly_one_online_agent_is_elected() -> None:
    now = time.time()
    agents = [f"agent-{n}" for n in range(5)]
    snap = snapshot([], [beat(a, now) for a in agents])
    assert sum(elected(snap, a, "some-key", now, now) for a in agents) == 1
    assert all(elected(snap, a, "some-key", now - 60, now) for a in agents)  # grace is over


def test_owners_stay_put_when_agents_see_different_claims_and_heartbeats() -> None:
    """Agents reading at different moments see different claims and stale heartbeats; each
    task still has one owner in every view, so two free agents never both take it at once."""
    now = time.time()
    agents = [f"agent-{n}" for n in range(8)]
    tasks = [task(f"t{n:02d}") for n in range(24)]
    owners: dict[str, set[str]] = {t.key: set() for t in tasks}
    for viewer_n, viewer in enumerate(agents):
        # This viewer has seen the first few tasks claimed and some agents' heartbeats busy.
        visible = tasks[viewer_n % 4:]
        beats = [beat(a, now, holding=("x",) if (n + viewer_n) % 3 == 0 else ())
                 for n, a in enumerate(agents)]
        snap = snapshot(visible, beats)
        candidates = claimable(snap, {"backend"}, set(), now)
        seen = {t.key: now for t in candidates}
        for picked in assigned(snap, viewer, candidates, seen, now):
            owners[picked.key].add(viewer)
    contested = {key: who for key, who in owners.items() if len(who) > 1}
    assert not contested, f"tasks two agents would claim at once: {contested}"
    assert sum(1 for who in owners.values() if who) >= len(tasks) - 4


def test_behind_a_busy_owner_agents_step_in_one_at_a_time() -> None:
    """Every heartbeat says busy (stale under load): still one more agent may try the task
    per STAGGER, in rendezvous order, never all of them at once."""
    now = time.time()
    agents = [f"agent-{n}" for n in range(8)]
    snap = snapshot([task("t")], [beat(a, now, holding=("x",)) for a in agents])
    candidates = claimable(snap, {"backend"}, set(), now)
    seen = {"t": now}
    for steps in range(1, len(agents)):
        at = now + STAGGER * (steps + 0.5)
        trying = [a for a in agents if assigned(snap, a, candidates, seen, at)]
        assert len(trying) == steps + 1, f"after {steps + 0.5} staggers: {trying}"


def test_a_longer_stagger_holds_the_next_in_line_back() -> None:
    now = time.time()
    agents = [f"agent-{n}" for n in range(4)]
    snap = snapshot([task("t")], [beat(a, now) for a in agents])
    candidates = claimable(snap, {"backend"}, set(), now)
    seen = {"t": now}

    def trying(at: float, stagger: float) -> int:
        return sum(1 for a in agents if assigned(snap, a, candidates, seen, at, stagger))

    assert trying(now + 1.0, STAGGER) == 4  # a fixed 0.3 s: all four in line after 1 s
    assert trying(now + 1.0, 2.0) == 1  # the owner alone
    assert trying(now + 2.5, 2.0) == 2


def test_a_holder_whose_lease_ran_out_leaves_the_tasks_line() -> None:
    """The owner froze holding the task (SIGSTOP, a cut) while its heartbeat is still
    recent: once the lease has run out, the next in line takes the task over at once, not a
    stagger later (a lapsed holder that still owned it could come back and renew a lease
    nobody took, and a frozen holder would never be fenced)."""
    now = time.time()
    agents = [f"agent-{n}" for n in range(4)]
    line = sorted(agents, key=lambda a: rank("t", a))
    holder, successor = line[0], line[1]
    claim = Claim(task="t", agent=holder, host="h", pid=1, attempt=1, claimed_at=now - 30,
                  renewed_at=now - 30, expires_at=now - 20, lease_seconds=10.0,
                  task_blob="0" * 40)
    snap = snapshot([task("t")], [beat(a, now) for a in agents])
    snap.claims["t"] = ClaimView("t", "1" * 40, claim, now - 30)
    candidates = claimable(snap, {"backend"}, set(), now)
    assert [t.key for t in candidates] == ["t"]  # stale: claimable again
    seen = {"t": now}
    trying = [a for a in agents if a != holder and assigned(snap, a, candidates, seen, now)]
    assert trying == [successor]
    # While the lease runs, the holder still stands first in the line.
    claim_live = Claim(**{**claim.__dict__, "expires_at": now + 30})
    snap.claims["t"] = ClaimView("t", "1" * 40, claim_live, now - 30)
    assert [a for a in agents if assigned(snap, a, [task("t")], seen, now)] == [holder]


def test_a_fallback_wakes_at_its_own_turn_not_every_stagger() -> None:
    """An agent waiting behind others for a task reads the repo again when its place in the
    line comes up, once: waking every stagger while any task waited anywhere cost every idle
    agent of a large fleet a read per stagger (64 agents stalled on one machine)."""
    now = time.time()
    agents = [f"agent-{n}" for n in range(8)]
    snap = snapshot([task("t")], [beat(a, now) for a in agents])
    candidates = claimable(snap, {"backend"}, set(), now)
    seen, stagger = {"t": now - 0.1}, 2.0
    line = sorted(agents, key=lambda a: rank("t", a))
    assert later(turns(snap, line[0], candidates, seen, now, stagger), now) == {}  # owner
    for place, agent in enumerate(line[1:], start=1):
        wake = later(turns(snap, agent, candidates, seen, now, stagger), now)["t"]
        assert wake == now - 0.1 + place * stagger, (place, wake)
        assert not assigned(snap, agent, candidates, seen, wake - 0.01, stagger)
        assert [t.key for t in assigned(snap, agent, candidates, seen, wake, stagger)] == ["t"]
        # Once its turn has come the task is due now: nothing later to wake for.
        assert later(turns(snap, agent, candidates, seen, wake, stagger), wake) == {}


def finished(snap: Snapshot, key: str, at: float) -> None:
    result = Result(task=key, status="succeeded", attempt=1, agent="x", finished_at=at)
    snap.claims[key] = ClaimView(key, "2" * 40, result, at)


def test_one_agent_folds_when_due_and_the_others_a_delay_apart() -> None:
    """Not every agent at once after a few delays (a fold push and a read by each): the
    online agents take turns, in rendezvous order for the oldest result's task, which a
    moving main does not change."""
    now = time.time()
    agents = [f"agent-{n}" for n in range(6)]
    snap = snapshot([], [beat(a, now) for a in agents])
    snap.main = "3" * 40
    snap.settings = RepoSettings(fold_delay_seconds=5.0, fold_batch=3)
    assert {fold_turn(snap, a, now) for a in agents} == {float("inf")}  # nothing to fold
    finished(snap, "a", now - 1.0)
    turns_at = sorted(fold_turn(snap, a, now) for a in agents)
    assert turns_at == [now - 1.0 + 5.0 * (1 + n) for n in range(6)]
    order = sorted(agents, key=lambda a: rank("a", a))  # for the oldest result's task
    assert fold_turn(snap, order[0], now) == turns_at[0]
    snap.main = "4" * 40  # main moved (a landing): the same order
    assert fold_turn(snap, order[0], now) == turns_at[0]
    # A full batch is due when its last result is in, not a delay after the first.
    finished(snap, "b", now - 0.8)
    finished(snap, "c", now - 0.5)
    assert fold_turn(snap, order[0], now) == now - 0.5
    assert fold_turn(snap, order[1], now) == now - 0.5 + 5.0
