"""Attempt counting, written once (cluster.state.statuses): the table itself, and the agent
publishing by it while the next claim numbers its attempt by it, on a real state repo."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from cluster.agent.config import AgentConfig
from cluster.agent.events import EventLog
from cluster.agent.loop import Agent
from cluster.agent.runner import AttemptReport, CommandRunner
from cluster.state.client import Held
from cluster.state.records import Release, Result
from cluster.state.statuses import (
    EXPIRED,
    SETTLES,
    AttemptStatus,
    Retry,
    Terminal,
    counts,
    next_attempt,
    settle,
)
from tests.clients import state_client
from tests.helpers import commit_files, make_state, task_doc, task_files

STATUSES: tuple[AttemptStatus, ...] = get_args(AttemptStatus)
# (status, attempt, max_attempts) -> where it leaves the task, as docs/state-protocol.md says.
EXPECTED: list[tuple[AttemptStatus, int, int, Terminal | Retry]] = [
    ("succeeded", 1, 3, "succeeded"),
    ("invalid", 1, 3, "invalid"),
    ("failed", 1, 3, Retry("failed", counted=True)),
    ("failed", 3, 3, "failed"),
    ("timed_out", 2, 3, Retry("timed_out", counted=True)),
    ("timed_out", 3, 3, "timed_out"),
    ("paused", 3, 3, Retry("paused", counted=False)),
    ("stopped", 3, 3, Retry("paused", counted=False)),
]


def test_every_attempt_status_has_one_rule() -> None:
    assert set(SETTLES) == set(STATUSES)
    assert [s for s in STATUSES if counts(s)] == ["failed", "timed_out"]
    assert counts(EXPIRED)  # a lease that ran out burns a try


@pytest.mark.parametrize(("status", "attempt", "most", "where"), EXPECTED)
def test_the_table(status: AttemptStatus, attempt: int, most: int,
                   where: Terminal | Retry) -> None:
    assert settle(status, attempt, most) == where
    if isinstance(where, Retry):
        assert next_attempt(attempt, where.counted) == attempt + (1 if where.counted else 0)


def key_of(status: str, most: int) -> str:
    return f"{status.replace('_', '-')}-{most}"


def test_the_agent_publishes_and_the_next_claim_counts_by_the_same_table(
        tmp_path: Path) -> None:
    repo = make_state(tmp_path, {"retry_backoff_seconds": 0})
    docs = [task_doc(key_of(s, most), max_attempts=most) for s in STATUSES for most in (1, 2)]
    commit_files(repo, task_files(docs), tmp_path / "person")
    config = AgentConfig.model_validate({"state": str(repo), "id": "a1",
                                         "specialties": ["backend"], "workdir": tmp_path / "w"})
    with state_client(repo, tmp_path, "a1") as client, \
            state_client(repo, tmp_path, "a2") as other:
        agent = Agent(config, CommandRunner(tmp_path / "w"),
                      EventLog("a1", tmp_path / "events.jsonl"), client)
        for status in STATUSES:
            for most in (1, 2):
                snap = client.snapshot()
                held = client.claim(snap, snap.tasks[key_of(status, most)], 30)
                assert isinstance(held, Held)
                agent._publish(snap, held, AttemptReport(status, f"ended {status}"))
        snap = other.snapshot()
        for status in STATUSES:
            for most in (1, 2):
                key = key_of(status, most)
                record, where = snap.claims[key].record, settle(status, 1, most)
                if not isinstance(where, Retry):
                    assert isinstance(record, Result) and record.status == where, key
                    continue
                assert isinstance(record, Release), key
                assert (record.status, record.counted) == (where.status, where.counted), key
                again = other.claim(snap, snap.tasks[key], 30)
                assert isinstance(again, Held), key
                assert again.claim.attempt == next_attempt(1, where.counted), key
