"""Refused folds: a fold moves main, and under a task stream main moves between an agent's read
and its fold push, so the push is refused. Each refusal in a row doubles the agent's wait
before the next try (up to FOLD_BACKOFF), and a fold by anyone else starts it over. Retried
every fold delay, as it was, every agent whose turn had passed tried at every reading for as
long as main kept moving: 16 agents over file:// sent 390 refused fold pushes for 100 tasks,
3 folds landing."""

from __future__ import annotations

import time
from pathlib import Path

from cluster.agent import loop
from cluster.agent.config import AgentConfig
from cluster.agent.events import EventLog
from cluster.agent.loop import Agent
from cluster.state.client import Held
from cluster.state.records import Result
from tests.clients import state_client
from tests.helpers import Holding, commit_files, make_state, task_doc, task_files

DELAY = 2.0


def _finished(repo: Path, tmp_path: Path, keys: list[str]) -> None:
    """``keys`` land on main, and another agent claims and finishes each."""
    commit_files(repo, task_files([task_doc(key) for key in keys]), tmp_path / "person")
    with state_client(repo, tmp_path, "other") as other:
        for key in keys:
            snap = other.snapshot()
            held = other.claim(snap, snap.tasks[key], lease=30)
            assert isinstance(held, Held)
            assert other.finish(held, Result(task=key, status="succeeded",
                                             attempt=held.claim.attempt, agent="other"))


def test_each_refused_fold_in_a_row_doubles_the_wait_and_a_landed_fold_ends_it(
        tmp_path: Path) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": DELAY})
    _finished(repo, tmp_path, ["f1", "f2"])
    config = AgentConfig.model_validate({"state": str(repo), "id": "a1",
                                         "specialties": ["backend"], "workdir": tmp_path / "w"})
    with state_client(repo, tmp_path, "a1") as client:
        agent = Agent(config, Holding(), EventLog("a1", None), client)
        try:
            waits = []
            for n in range(7):
                snap = client.snapshot()
                # Main moves after the read, as a task stream moves it: the fold is refused.
                commit_files(repo, {f"notes/{n}.txt": "moved\n"}, tmp_path / "person")
                before = time.time()
                agent._maybe_fold(snap, final=True)
                assert agent.counters["folded"] == 0
                waits.append(agent.st.fold_retry_at - before)
            for n, wait in enumerate(waits):
                most = min(DELAY * 2 ** n, loop.FOLD_BACKOFF)
                assert most * 0.5 - 0.1 <= wait <= most, (n, waits)
            assert waits[-1] > DELAY * 8, waits  # retried every delay, it stayed below DELAY

            # Another agent folds what we tried to: the count starts over, the next wait is short.
            with state_client(repo, tmp_path, "other") as other:
                assert other.fold(other.snapshot(), limit=10) == 2
            _finished(repo, tmp_path, ["f3"])
            snap = client.snapshot()
            commit_files(repo, {"notes/last.txt": "moved\n"}, tmp_path / "person")
            before = time.time()
            agent._maybe_fold(snap, final=True)
            assert agent.st.fold_refused is not None and agent.st.fold_refused[1] == 1
            assert agent.st.fold_retry_at - before <= DELAY, agent.st
            # From a read that is current, the fold lands and the count starts over.
            agent.st.fold_retry_at = 0.0
            agent._maybe_fold(client.snapshot(), final=True)
            assert agent.counters["folded"] == 1 and agent.st.fold_refused is None
        finally:
            agent._shutdown()
