"""Every terminal result says when it was written, whoever writes it; the fold ages it by that."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.state.checker import check
from cluster.state.client import Held, StateClient
from cluster.state.gitcmd import list_refs
from cluster.state.ids import claim_ref
from cluster.state.records import Result
from cluster.state.submit import cancel
from tests.clients import state_client
from tests.helpers import commit_files, make_state, poll, task_doc, task_files


def tip_result(c: StateClient, key: str) -> Result:
    record = c.snapshot().claims[key].record
    assert isinstance(record, Result), record
    return record


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_state(tmp_path, {"skew_seconds": 0.1})
    docs = [task_doc("own"), task_doc("last", max_attempts=1), task_doc("gone"),
            task_doc("held")]
    commit_files(repo, task_files(docs), tmp_path / "person")
    return repo


def test_own_attempt_result_is_stamped_when_written(repo: Path, tmp_path: Path) -> None:
    a = state_client(repo, tmp_path, "a")
    snap = a.snapshot()
    held = a.claim(snap, snap.tasks["own"], 30)
    assert isinstance(held, Held)
    before = time.time()
    assert a.finish(held, Result(task="own", status="succeeded", attempt=1, agent="a"))
    stamped = tip_result(a, "own").finished_at
    assert stamped is not None and stamped >= before - 0.001


def test_takeover_on_the_last_attempt_writes_finished_at(repo: Path, tmp_path: Path) -> None:
    a, b = state_client(repo, tmp_path, "a"), state_client(repo, tmp_path, "b")
    snap = a.snapshot()
    first = a.claim(snap, snap.tasks["last"], lease=0.2)
    assert isinstance(first, Held)
    poll(lambda: b.snapshot().state("last") == "stale", 10, "the lease to expire")
    snap = b.snapshot()
    ended = b.claim(snap, snap.tasks["last"], lease=30)
    assert isinstance(ended, Result) and ended.status == "failed"
    written = tip_result(b, "last")
    assert written.finished_at == pytest.approx(ended.finished_at, abs=0.001)  # ms on disk
    assert written.started_at == pytest.approx(first.claim.claimed_at, abs=0.001)
    assert check(repo).tasks["last"] == ("done", "failed")


@pytest.mark.parametrize("holder", [False, True])
def test_cancel_writes_finished_at(repo: Path, tmp_path: Path, holder: bool) -> None:
    a = state_client(repo, tmp_path, "a")
    key = "held" if holder else "gone"
    if holder:
        snap = a.snapshot()
        assert isinstance(a.claim(snap, snap.tasks[key], 30), Held)
    cancel(state_client(repo, tmp_path, "operator"), key, "not needed")
    result = tip_result(a, key)
    assert result.status == "cancelled" and result.finished_at is not None


def test_invalid_and_dependency_verdicts_write_finished_at(
        tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2, "retry_backoff_seconds": 0.1})
    docs = [task_doc("fails", command="exit 3", max_attempts=1),
            task_doc("after", depends_on=["fails"]),
            task_doc("orphan", depends_on=["nobody"])]
    files = task_files(docs) | {"tasks/broken.yaml": yaml.safe_dump({"id": "broken"})}
    commit_files(repo, files, tmp_path / "person")
    proc = agents(repo, "solo", exit_when_idle=True, lease=5, heartbeat=0.5)
    assert proc.wait(120) == 0, proc.tail()
    reader = state_client(repo, tmp_path, "reader")
    snap = reader.snapshot()
    results = {key: snap.result(key) for key in ("fails", "after", "orphan", "broken")}
    statuses = {k: r.status if r else None for k, r in results.items()}
    assert statuses == {"fails": "failed", "after": "cancelled", "orphan": "invalid",
                        "broken": "invalid"}
    assert all(r is not None and r.finished_at is not None for r in results.values()), results
    reader.close()


def write_old_result(c: StateClient, key: str, age: float) -> str:
    """A result as repos from before the stamp hold it: ``finished_at: null``, written
    ``age`` seconds ago."""
    store = c.remote.store
    record = Result(task=key, status="failed", attempt=1, agent="old", reason="old repo")
    tree = store.single_file_tree(record.FILE, record.to_yaml())
    commit = store.write_commit(tree, (), c.identity.ident, int(time.time() - age), "result")
    assert c._cas(claim_ref(key), commit, None)
    return commit


def test_a_result_without_finished_at_is_aged_by_its_commit(repo: Path, tmp_path: Path) -> None:
    a = state_client(repo, tmp_path, "a")
    write_old_result(a, "gone", age=3600)
    view = a.snapshot().claims["gone"]
    assert isinstance(view.record, Result) and view.record.finished_at is None
    assert view.finished_at is not None and time.time() - view.finished_at >= 3599
    b = state_client(repo, tmp_path, "b")
    assert b.snapshot().claims["gone"].finished_at == view.finished_at


def test_an_old_result_without_finished_at_is_folded(tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.5})
    commit_files(repo, task_files([task_doc("old")]), tmp_path / "person")
    write_old_result(state_client(repo, tmp_path, "writer"), "old", age=60)
    agents(repo, "folder", lease=5, heartbeat=0.5, poll_s=0.5)
    poll(lambda: claim_ref("old") not in list_refs(["refs/claims"], git_dir=repo), 20,
         "the old result to be folded")
    assert state_client(repo, tmp_path, "reader").snapshot().result("old") is not None
