"""Claim order and the rendezvous matching, on snapshots built by hand."""

from __future__ import annotations

import time
from typing import Any

from cluster.agent.choose import STAGGER, assigned, claimable, elected
from cluster.state.records import Heartbeat
from cluster.state.schema import TaskSpec
from cluster.state.settings import RepoSettings
from cluster.state.snapshot import Snapshot, TaskView


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
    picks = {a: [t.key for t in assigned(snap, a, {"backend"}, 1, candidates, seen, now)]
             for a in agents}
    chosen = [k for keys in picks.values() for k in keys]
    assert sorted(chosen) == sorted(t.key for t in tasks)  # each task to exactly one agent
    # Much later, everybody may step in for everything (the matched agents never claimed).
    later = now + STAGGER * (len(agents) + 1)
    for agent in agents:
        late = assigned(snap, agent, {"backend"}, 1, candidates, seen, later)
        assert len(late) == len(tasks)


def test_exactly_one_online_agent_is_elected() -> None:
    now = time.time()
    agents = [f"agent-{n}" for n in range(5)]
    snap = snapshot([], [beat(a, now) for a in agents])
    assert sum(elected(snap, a, "some-key", now, now) for a in agents) == 1
    assert all(elected(snap, a, "some-key", now - 60, now) for a in agents)  # grace is over
