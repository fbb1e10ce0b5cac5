"""Invariants 1 and 3 under contention: 8 real agent processes race for 200 tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cluster.state.checker import check
from tests.helpers import commit_files, make_state, task_doc, task_files

AGENTS = 8
TASKS = 200


@pytest.mark.slow
def test_eight_agents_two_hundred_tasks_each_done_exactly_once(
        tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.5})
    docs = [task_doc(f"t{i:03d}", priority=("low", "high")[i % 2]) for i in range(TASKS)]
    person = tmp_path / "person"
    commit_files(repo, task_files(docs[:50]), person, "first batch")
    procs = [agents(repo, f"agent-{n}", exit_when_idle=False, lease=10, heartbeat=2)
             for n in range(AGENTS)]
    # The rest lands while the agents work: event-driven claims, not only a cold start.
    for start in range(50, TASKS, 50):
        commit_files(repo, task_files(docs[start:start + 50]), person, f"batch {start}")
    procs += [agents(repo, "closer", exit_when_idle=True, lease=10, heartbeat=2)]
    assert procs[-1].wait(timeout=600) == 0, procs[-1].tail()
    for proc in procs[:-1]:
        proc.stop()
    report = check(repo)
    summary = report.summary()
    assert report.problems() == {}
    assert summary["done"] == TASKS and summary["statuses"] == {"succeeded": TASKS}
    assert summary["duplicated"] == summary["lost"] == summary["stale"] == 0
    # Each task was claimed exactly once: no live claim was ever taken from anybody.
    assert all(h.attempts() == 1 for h in report.histories.values())
    claimed = sum(1 for p in procs for e in p.events() if e["event"] == "claimed")
    assert claimed == TASKS


@pytest.mark.slow
def test_racing_through_push_and_fetch(tmp_path: Path, agents: Any) -> None:
    """The same race through file://: git push CAS and ls-remote/fetch, as over ssh."""
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.5})
    docs = [task_doc(f"f{i:02d}") for i in range(60)]
    commit_files(repo, task_files(docs), tmp_path / "person")
    url = f"file://{repo}"
    procs = [agents(url, f"agent-{n}", exit_when_idle=True, lease=10, heartbeat=2, poll_s=0.3)
             for n in range(4)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.tail()
    report = check(repo)
    assert report.problems() == {}
    assert report.summary()["statuses"] == {"succeeded": 60}
    assert sum(1 for p in procs for e in p.events() if e["event"] == "claimed") == 60
