"""The protocol's writes on a real bare repo: CAS claims, fencing, renewals, folds, cancel."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from cluster.errors import ClusterError
from cluster.state.checker import check
from cluster.state.client import Held, StateClient
from cluster.state.gitcmd import list_refs, run_git
from cluster.state.records import Claim, Result
from cluster.state.submit import cancel
from tests.clients import state_client
from tests.helpers import commit_files, make_state, task_doc, task_files


def done(held: Held, agent: str) -> Result:
    return Result(task=held.key, status="succeeded", attempt=held.claim.attempt, agent=agent)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_state(tmp_path)
    commit_files(repo, task_files([task_doc("t1"), task_doc("t2", max_attempts=2)]),
                 tmp_path / "person")
    return repo


def test_only_one_of_two_racing_claims_is_accepted(repo: Path, tmp_path: Path) -> None:
    a, b = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "b")
    snap_a, snap_b = a.snapshot(), b.snapshot()
    got_a = a.claim(snap_a, snap_a.tasks["t1"], 30)
    got_b = b.claim(snap_b, snap_b.tasks["t1"], 30)
    assert isinstance(got_a, Held)
    assert got_b is None and b.rejected_pushes == 1
    assert b.snapshot().state("t1") == "claimed"


def test_fenced_result_after_takeover(repo: Path, tmp_path: Path) -> None:
    a, b = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "b")
    snap = a.snapshot()
    held_a = a.claim(snap, snap.tasks["t1"], lease=0.5)
    assert isinstance(held_a, Held)
    time.sleep(0.5 + 2.0 + 0.1)  # the lease plus the repo's clock-skew allowance must pass
    snap_b = b.snapshot()
    assert snap_b.state("t1") == "stale"
    held_b = b.claim(snap_b, snap_b.tasks["t1"], lease=30)
    assert isinstance(held_b, Held)
    assert held_b.claim.attempt == 2 and held_b.claim.takeover_of == held_a.tip
    # The first holder comes back: its renewal and its result are both refused.
    _, lost, _ = a.renew([held_a], None, None)
    assert lost == {"t1"}
    assert a.finish(held_a, done(held_a, "a")) is False
    assert b.finish(held_b, done(held_b, "b")) is True
    report = check(repo)
    assert report.tasks["t1"] == ("done", "succeeded")
    assert report.histories["t1"].takeovers() == 1


def test_takeover_on_the_last_attempt_ends_the_task(repo: Path, tmp_path: Path) -> None:
    a, b = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "b")
    snap = a.snapshot()
    first = a.claim(snap, snap.tasks["t2"], lease=0.2)
    assert isinstance(first, Held)
    time.sleep(2.3)
    snap = b.snapshot()
    second = b.claim(snap, snap.tasks["t2"], lease=0.2)
    assert isinstance(second, Held) and second.claim.attempt == 2
    time.sleep(2.3)
    snap = a.snapshot()
    ended = a.claim(snap, snap.tasks["t2"], lease=30)
    assert isinstance(ended, Result) and ended.status == "failed"
    assert "last attempt (2 of 2)" in ended.reason
    assert check(repo).tasks["t2"] == ("done", "failed")


def test_renewals_replace_the_claim_commit(repo: Path, tmp_path: Path) -> None:
    a = state_client(repo, tmp_path, "a")
    snap = a.snapshot()
    held = a.claim(snap, snap.tasks["t1"], lease=30)
    assert isinstance(held, Held)
    main_before = list_refs(["refs/heads/main"], git_dir=repo)
    for _ in range(5):
        renewed, lost, _ = a.renew([held], None, None)
        assert not lost
        held = renewed["t1"]
    count = run_git(["rev-list", "--count", "refs/claims/t1"], git_dir=repo).stdout.strip()
    assert count == "1"
    assert list_refs(["refs/heads/main"], git_dir=repo) == main_before
    record = a.snapshot().claims["t1"].record
    assert isinstance(record, Claim) and record.renewed_at > held.claim.claimed_at - 1


def test_fold_archives_and_deletes_claim_refs_atomically(repo: Path, tmp_path: Path) -> None:
    a = state_client(repo, tmp_path, "a")
    for key in ("t1", "t2"):
        snap = a.snapshot()
        held = a.claim(snap, snap.tasks[key], lease=30)
        assert isinstance(held, Held)
        assert a.finish(held, done(held, "a"))
    snap = a.snapshot()
    assert a.fold(snap, limit=10) == 2
    after = a.snapshot()
    assert not after.claims and not after.tasks
    assert set(after.archived) == {"t1", "t2"}
    assert after.state("t1") == "succeeded"
    # The claim chains are part of main's history now.
    log = run_git(["log", "--format=%s", "main"], git_dir=repo).stdout
    assert "claim t1 attempt 1 by a" in log and "result t2: succeeded" in log
    # A fold from the stale snapshot is refused as a whole.
    assert a.fold(snap, limit=10) == 0
    assert check(repo).summary()["done"] == 2


def run_and_archive(agent: StateClient, key: str) -> None:
    """``agent`` claims ``key``, succeeds and folds it into the archive."""
    snap = agent.snapshot()
    held = agent.claim(snap, snap.tasks[key], lease=30)
    assert isinstance(held, Held) and agent.finish(held, done(held, agent.identity.name))
    assert agent.fold(agent.snapshot(), limit=10) == 1


def test_claim_made_from_a_stale_view_of_a_folded_task_is_withdrawn(
        repo: Path, tmp_path: Path) -> None:
    a, b = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "b")
    stale_view = b.snapshot()
    run_and_archive(a, "t1")
    assert b.claim(stale_view, stale_view.tasks["t1"], lease=30) is None
    assert "refs/claims/t1" not in list_refs(["refs/claims"], git_dir=repo)
    assert check(repo).tasks["t1"] == ("done", "succeeded")


def test_terminal_result_written_from_a_stale_view_of_a_folded_task_is_withdrawn(
        repo: Path, tmp_path: Path) -> None:
    # Two agents judge the same task from views read before a fold archived it: a CI run saw
    # the second one's result accepted (its ref, deleted by the fold, was absent as expected).
    a, b = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "b")
    stale_view = b.snapshot()
    snap = a.snapshot()
    first = Result(task="t1", status="invalid", attempt=0, agent="a", reason="judged by a")
    assert a.write_terminal(snap, "t1", first, None)
    assert a.fold(a.snapshot(), limit=10) == 1
    late = Result(task="t1", status="invalid", attempt=0, agent="b", reason="judged by b")
    assert b.write_terminal(stale_view, "t1", late, None) is False
    assert "refs/claims/t1" not in list_refs(["refs/claims"], git_dir=repo)
    assert check(repo).tasks["t1"] == ("done", "invalid")
    kept = b.snapshot().result("t1")
    assert kept is not None and kept.finished_at is not None  # stamped when written
    assert dataclasses.replace(kept, finished_at=None) == first


def test_cancel_racing_a_fold_says_the_task_already_finished(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, op = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "operator")
    pending = op.snapshot()
    run_and_archive(a, "t1")
    # The operator's first look predates the claim, the result and the fold.
    reads = iter([pending])
    fresh = op.snapshot
    monkeypatch.setattr(op, "snapshot", lambda: next(reads, None) or fresh())
    with pytest.raises(ClusterError, match="already finished: succeeded"):
        cancel(op, "t1", "not needed")
    assert check(repo).tasks["t1"] == ("done", "succeeded")


def test_cancel_fences_the_holder(repo: Path, tmp_path: Path) -> None:
    a, op = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "operator")
    snap = a.snapshot()
    held = a.claim(snap, snap.tasks["t1"], lease=30)
    assert isinstance(held, Held)
    result = cancel(op, "t1", "not needed")
    assert result.status == "cancelled"
    assert a.finish(held, done(held, "a")) is False
    with pytest.raises(ClusterError, match="already finished: cancelled"):
        cancel(op, "t1", "again")
    with pytest.raises(ClusterError, match="not in the state repo"):
        cancel(op, "nope", "x")
    assert check(repo).tasks["t1"] == ("done", "cancelled")
