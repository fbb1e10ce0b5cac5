"""Invariants 2 and 3 with real faults: SIGKILL, SIGSTOP past the lease, a vanished remote."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from cluster.errors import RemoteUnavailable
from cluster.state.checker import check
from cluster.state.gitcmd import list_refs
from cluster.state.gitobj import ObjectStore
from cluster.state.records import Claim
from tests.clients import state_client
from tests.helpers import commit_files, make_state, poll, state_url, task_doc, task_files

LEASE = 2.0


def settings() -> dict[str, float]:
    return {"fold_delay_seconds": 0.2, "skew_seconds": 0.2, "retry_backoff_seconds": 0.1}


@pytest.mark.parametrize("style", ["path", "file"])
def test_sigkilled_holder_is_taken_over_and_the_task_finishes_once(
        tmp_path: Path, agents: Any, style: str) -> None:
    repo = make_state(tmp_path, settings())
    commit_files(repo, task_files([task_doc("slow", command="sleep 1")]), tmp_path / "p")
    url = state_url(repo, style)
    first = agents(url, "first", lease=LEASE, heartbeat=0.5, poll_s=0.2)
    poll(lambda: first.saw("claimed", "slow"), 30, "the first agent to claim")
    first.signal(signal.SIGKILL)
    first.wait(10)
    second = agents(url, "second", lease=LEASE, heartbeat=0.5, exit_when_idle=True, poll_s=0.2)
    assert second.wait(60) == 0, second.tail()
    claimed = second.saw("claimed", "slow")
    assert claimed is not None and claimed["takeover"] is True and claimed["attempt"] == 2
    report = check(repo)
    assert report.tasks["slow"] == ("done", "succeeded")
    assert report.histories["slow"].takeovers() == 1


def test_sigkilled_holder_of_a_last_attempt_is_failed_and_folded(
        tmp_path: Path, agents: Any) -> None:
    # The taker writes the terminal failed itself; it must carry finished_at so that the fold
    # ages it like any result (it once never folded unless another task finished).
    fold_delay, poll_s = 0.5, 0.5
    repo = make_state(tmp_path, settings() | {"fold_delay_seconds": fold_delay})
    commit_files(repo, task_files([task_doc("once", command="sleep 30", max_attempts=1)]),
                 tmp_path / "p")
    first = agents(repo, "first", lease=LEASE, heartbeat=0.5, poll_s=poll_s)
    poll(lambda: first.saw("claimed", "once"), 30, "the first agent to claim")
    first.signal(signal.SIGKILL)
    first.wait(10)
    second = agents(repo, "second", lease=LEASE, heartbeat=0.5, poll_s=poll_s)
    lost = poll(lambda: second.saw("lost_on_last_attempt", "once"), 60,
                lambda: f"the second agent to end the task:\n{second.tail()}")
    assert "last attempt (1 of 1)" in lost["reason"]
    # Folded within the fold delay plus one interval (with room for a slow machine).
    poll(lambda: "refs/claims/once" not in list_refs(["refs/claims"], git_dir=repo),
         fold_delay + poll_s + 10, lambda: f"the fold of the failed task:\n{second.tail()}")
    report = check(repo)
    assert report.tasks["once"] == ("done", "failed")
    assert report.problems() == {}
    archived = state_client(repo, tmp_path).snapshot()
    result = archived.result("once")
    assert "once" in archived.archived and result is not None
    assert result.status == "failed" and result.finished_at is not None


def test_sigstop_past_lease_is_fenced(tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, settings())
    commit_files(repo, task_files([task_doc("paused", command="sleep 2")]), tmp_path / "p")
    sleeper = agents(repo, "sleeper", lease=LEASE, heartbeat=0.5)
    poll(lambda: sleeper.saw("claimed", "paused"), 30, "the sleeper to claim")
    sleeper.signal(signal.SIGSTOP)
    taker = agents(repo, "taker", lease=LEASE, heartbeat=0.5)
    poll(lambda: taker.saw("published", "paused"), 60, "the taker to finish the task")
    sleeper.signal(signal.SIGCONT)
    fenced = poll(lambda: sleeper.saw("claim_lost", "paused")
                  or sleeper.saw("result_fenced", "paused"), 30, "the sleeper to be fenced")
    assert fenced["event"] in ("claim_lost", "result_fenced")
    assert sleeper.saw("published", "paused") is None
    report = check(repo)
    assert report.tasks["paused"] == ("done", "succeeded")
    history = report.histories["paused"]
    results = [r for r in history.records.values() if r.__class__.__name__ == "Result"]
    assert [r.agent for r in results] == ["taker"]
    claims = [r for r in history.records.values() if isinstance(r, Claim)]
    assert sorted(c.agent for c in claims) == ["sleeper", "taker"]


@pytest.mark.parametrize("style", ["path", "file"])
def test_remote_gone_for_a_while_agents_back_off_and_converge(
        tmp_path: Path, agents: Any, style: str) -> None:
    repo = make_state(tmp_path, settings())
    docs = [task_doc(f"w{i:02d}", command="sleep 0.3") for i in range(30)]
    commit_files(repo, task_files(docs), tmp_path / "p")
    url = state_url(repo, style)
    procs = [agents(url, f"a{n}", lease=5, heartbeat=0.5, poll_s=0.5) for n in range(3)]
    poll(lambda: sum(1 for p in procs for e in p.events() if e["event"] == "published") >= 5,
         60, "some tasks to finish")
    away = tmp_path / "state.git.away"
    shutil.move(repo, away)
    poll(lambda: all(p.saw("remote_unavailable") for p in procs), 60,
         lambda: "every agent to notice the remote is gone: "
         + repr({p.id: (p.saw("remote_unavailable"), p.events()[-3:]) for p in procs}))
    assert not repo.exists(), f"an agent re-created the state repo path: {list(repo.rglob('*'))}"
    shutil.move(away, repo)
    poll(lambda: all(p.saw("remote_back") for p in procs), 60,
         lambda: "every agent to reconnect:\n" + "\n".join(
             f"{p.id} (exit {p.proc.poll()}):\n{p.tail()}" for p in procs
             if not p.saw("remote_back")))
    closer = agents(url, "closer", lease=5, heartbeat=0.5, exit_when_idle=True, poll_s=0.5)
    assert closer.wait(120) == 0, closer.tail()
    report = check(repo)
    assert report.problems() == {}
    assert report.summary()["done"] == 30


def test_sigterm_releases_held_work_without_burning_the_attempt(
        tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, settings())
    commit_files(repo, task_files([task_doc("long", command="sleep 60", max_attempts=1)]),
                 tmp_path / "p")
    first = agents(repo, "first", lease=LEASE, heartbeat=0.5, extra=["--stop-grace", "0.5"])
    poll(lambda: first.saw("claimed", "long"), 30, "the first agent to claim")
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0, first.tail()
    released = first.saw("published", "long")
    assert released is not None and released["kind"] == "release"
    assert released["status"] == "paused"
    # max_attempts is 1: had the shutdown burnt the attempt, nobody could run it again.
    second = agents(repo, "second", lease=LEASE, heartbeat=0.5, extra=["--stop-grace", "0.5"])
    again = poll(lambda: second.saw("claimed", "long"), 30, "another agent to claim it again")
    assert again["attempt"] == 1
    history = check(repo).histories["long"]
    assert [r.status for r in history.records.values() if not isinstance(r, Claim)] == ["paused"]


def test_repo_moved_away_in_the_middle_of_an_object_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CI run that moved the repo mid-write saw an agent die of FileNotFoundError instead
    # of backing off: the write must say "remote unavailable" and never re-create the repo.
    repo = make_state(tmp_path, settings())
    store = ObjectStore(repo)
    mkdir = Path.mkdir

    def moved_first(self: Path, *args: Any, **kwargs: Any) -> None:
        if repo.exists():
            repo.rename(tmp_path / "state.git.away")
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", moved_first)
    with pytest.raises(RemoteUnavailable, match="could not store object"):
        store.write_blob(b"written while the repo moves away\n")
    assert not repo.exists()
    store.close()
