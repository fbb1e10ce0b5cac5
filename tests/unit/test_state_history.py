"""A state repo defended without its hook: an id a fold archived in main's history never runs
again, whatever a later commit on main does to archive/ or tasks/ (issue #13, item 2).

The attack: a commit on main (a merge whose second parent is an old main, written by a
plain-path writer, where no pre-receive hook runs) takes the tree from before a fold:
``archive/`` is gone and the finished task's file is back under ``tasks/``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.agent.choose import claimable
from cluster.state import history
from cluster.state.checker import check
from cluster.state.client import StateClient
from cluster.state.gitcmd import run_git
from cluster.state.gitobj import ObjectStore, TreeEditor
from cluster.state.history import ANCESTRY_WALK, FoldLedger, added, is_ancestor
from cluster.state.ids import key_for_name
from cluster.state.records import Result
from cluster.state.snapshot import Snapshot
from tests.clients import state_client
from tests.helpers import ROOT, commit_files, main_of, make_state, poll, task_doc, task_files

IDENT = "t <t@localhost>"
FAST = {"fold_delay_seconds": 0.2, "skew_seconds": 0.2, "retry_backoff_seconds": 0.1}


def rewrite_main_to_tree_of(repo: Path, old: str) -> str:
    """The hostile commit: a merge of main with ``old`` that takes ``old``'s tree, moved in
    with a ref transaction as any plain-path writer can (no hook runs)."""
    current = main_of(repo)
    env = {"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x",
           "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x"}
    merge = run_git(["commit-tree", f"{old}^{{tree}}", "-p", current, "-p", old,
                     "-m", "merge an old main"], git_dir=repo, env=env).stdout.strip()
    run_git(["update-ref", "refs/heads/main", merge, current], git_dir=repo)
    return merge


def claimable_keys(snap: Snapshot, specialties: list[str]) -> list[str]:
    return [t.key for t in claimable(snap, specialties, (), time.time())]


def run_and_fold(client: StateClient, key: str) -> None:
    snap = client.snapshot()
    held = client.claim(snap, snap.tasks[key], 30.0)
    assert held is not None and not isinstance(held, Result)
    assert client.finish(held, Result(task=key, status="succeeded", attempt=1, agent="a1"))
    assert client.fold(client.snapshot(), 10) == 1


def test_a_folded_id_brought_back_is_replayed_not_pending(tmp_path: Path) -> None:
    repo = make_state(tmp_path, FAST)
    commit_files(repo, task_files([task_doc("t1")]), tmp_path / "p")
    before_fold = main_of(repo)
    with state_client(repo, tmp_path, "a1", work="w") as client:
        run_and_fold(client, "t1")
        assert "t1" in client.snapshot().archived
        rewrite_main_to_tree_of(repo, before_fold)
        snap = client.snapshot()
        assert "t1" in snap.tasks and "t1" not in snap.archived  # the tree says: pending
        assert snap.state("t1") == "replayed"
        assert claimable_keys(snap, ["backend"]) == []
        assert "already finished" in snap.replayed()["t1"]
        assert snap.unarchived() == ["t1"]
        result = snap.result("t1")  # still read from the fold in history, for dependants
        assert result is not None and result.status == "succeeded"
        # Control: the same tree without the history's knowledge runs t1 again.
        blind = dataclasses.replace(snap, folded={})
        assert blind.state("t1") == "pending"
        assert claimable_keys(blind, ["backend"]) == ["t1"]


def test_the_ledger_reads_only_new_commits_and_follows_a_rewritten_history(
        tmp_path: Path) -> None:
    repo = make_state(tmp_path, FAST)
    commit_files(repo, task_files([task_doc("t1"), task_doc("t2")]), tmp_path / "p")
    start = main_of(repo)
    with state_client(repo, tmp_path, "a1", work="w") as client:
        run_and_fold(client, "t1")
        ledger = FoldLedger(repo)
        assert set(ledger.update(main_of(repo))) == {"t1"}
        run_and_fold(client, "t2")
        assert set(ledger.update(main_of(repo))) == {"t1", "t2"}
        # A main that is no descendant (reset by hand) is read whole: what it lost is gone.
        folded_main = main_of(repo)
        run_git(["update-ref", "refs/heads/main", start], git_dir=repo)
        assert ledger.update(start) == {}
        assert set(ledger.update(folded_main)) == {"t1", "t2"}


def test_an_agent_never_runs_a_folded_id_again_and_keeps_working(
        tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, FAST)
    commit_files(repo, task_files([task_doc("t1")]), tmp_path / "p")
    before_fold = main_of(repo)
    agent = agents(str(repo), "a0", lease=5, heartbeat=0.5, poll_s=0.2)
    poll(lambda: agent.saw("folded"), 60, lambda: f"t1 to be folded:\n{agent.tail()}")
    rewrite_main_to_tree_of(repo, before_fold)
    poll(lambda: agent.saw("replay_refused", "t1") and agent.saw("archive_rewritten"), 60,
         lambda: f"the agent to refuse the replay and report the archive:\n{agent.tail()}")
    rewritten = agent.saw("archive_rewritten")
    assert rewritten is not None and rewritten["ids"] == ["t1"]
    commit_files(repo, task_files([task_doc("t2")]), tmp_path / "p")
    poll(lambda: agent.saw("published", "t2"), 60, lambda: f"t2 to run:\n{agent.tail()}")
    claims = [e for e in agent.events() if e["event"] == "claimed" and e["task"] == "t1"]
    assert len(claims) == 1, claims
    agent.stop()
    report = check(repo)
    assert report.tasks["t1"] == ("done", "succeeded")
    assert report.summary()["duplicated"] == 0
    status = subprocess.run([sys.executable, "-m", "cluster", "status", "--state", str(repo),
                             "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    shown = json.loads(status.stdout)
    assert shown["tasks"]["replayed"] == 1 and shown["unarchived"] == ["t1"]
    rows = json.loads(subprocess.run(
        [sys.executable, "-m", "cluster", "task", "list", "--state", str(repo), "--json"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    row = next(r for r in rows if r["id"] == "t1")
    assert row["state"] == "replayed" and "already finished" in row["reason"]


def test_names_git_would_quote_are_read_as_they_are(tmp_path: Path) -> None:
    """``git log`` without -z prints ``"tasks/nl\\n.yaml"`` quoted: the readers use -z."""
    work = tmp_path / "w"
    run_git(["init", "--quiet", "-b", "main", str(work)])
    names = ["nl\n.yaml", 'q "x".yaml', "tab\t.yaml", "ok.yaml"]
    for name in names:
        (work / "tasks").mkdir(exist_ok=True)
        (work / "tasks" / name).write_text("x: 1\n")
    env = {"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x",
           "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x"}
    run_git(["add", "tasks"], git_dir=work / ".git", work_tree=work)
    run_git(["commit", "--quiet", "-m", "add"], git_dir=work / ".git", work_tree=work, env=env)
    plain = run_git(["log", "--format=", "--name-only", "main"], git_dir=work / ".git").stdout
    assert '"tasks/nl\\n.yaml"' in plain  # the control: what a reader without -z sees
    found = sorted(item.path for item in added(work / ".git", "main", "tasks"))
    assert found == sorted(f"tasks/{n}" for n in names)
    assert key_for_name("nl\n.yaml").startswith("bad.")


def _dag(store: ObjectStore, shape: list[list[int]]) -> list[str]:
    """Commits whose parents are earlier commits by index (``shape[i]``: commit i's)."""
    shas: list[str] = []
    for n, parents in enumerate(shape):
        tree = store.single_file_tree("n", str(n).encode())
        shas.append(store.write_commit(tree, tuple(shas[p] for p in parents), IDENT, n, f"{n}"))
    return shas


@st.composite
def dags(draw: st.DrawFn) -> list[list[int]]:
    """Histories of up to 90 commits (past the walk's bound): mostly a chain, as main is,
    with merges of any earlier commit and new roots."""
    size = draw(st.integers(1, 90))
    shape: list[list[int]] = [[]]
    for n in range(1, size):
        first = [] if draw(st.integers(0, 9)) == 0 else [n - 1]
        shape.append(sorted({*first, *draw(st.lists(st.integers(0, n - 1), max_size=2))}))
    return shape


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(shape=dags(), data=st.data())
def test_ancestry_walked_in_process_is_gits(tmp_path: Path, shape: list[list[int]],
                                            data: st.DataObject) -> None:
    """For any history, the in-process walk (and git past its bound) answers as
    ``git merge-base --is-ancestor`` does, for any two commits, and for a sha of none."""
    repo = tmp_path / f"dag-{len(list(tmp_path.iterdir()))}.git"
    run_git(["init", "--quiet", "--bare", str(repo)])
    store = ObjectStore(repo)
    try:
        shas = _dag(store, shape)
        pairs = data.draw(st.lists(st.tuples(st.sampled_from(shas), st.sampled_from(shas)),
                                   min_size=1, max_size=6))
        pairs += [("f" * 40, shas[-1]), (shas[0], shas[-1]), (shas[-1], shas[0])]
        for old, new in pairs:
            assert is_ancestor(repo, old, new, store=store) == is_ancestor(repo, old, new), \
                (shape, shas.index(old) if old in shas else old, shas.index(new))
    finally:
        store.close()


@pytest.fixture
def history_gits(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every git command cluster.state.history runs, from here on."""
    ran: list[list[str]] = []
    real = run_git

    def counted(args: list[str], **kwargs: Any) -> Any:
        ran.append(args)
        return real(args, **kwargs)

    monkeypatch.setattr(history, "run_git", counted)
    return ran


def test_a_main_a_few_commits_on_is_judged_without_a_process(
        tmp_path: Path, history_gits: list[list[str]]) -> None:
    """The fold ledger's ancestry question after a reading's few new commits (and a
    rewritten history of a few) starts no git; a long history is still left to git."""
    repo = tmp_path / "chain.git"
    run_git(["init", "--quiet", "--bare", str(repo)])
    store = ObjectStore(repo)
    asked = history_gits
    try:
        chain = _dag(store, [[]] + [[n] for n in range(ANCESTRY_WALK + 10)])
        other = _dag(store, [[], [0], [1]])
        assert is_ancestor(repo, chain[-4], chain[-1], store=store)
        assert not is_ancestor(repo, chain[-1], other[-1], store=store)  # all 3 read: none
        assert asked == []
        assert is_ancestor(repo, chain[0], chain[-1], store=store)  # past the bound: git's
        assert len(asked) == 1
    finally:
        store.close()


# What a commit of a generated history does: put or remove an archived result (by key), put a
# file elsewhere, or make ``archive`` a file (which git's ``archive/`` pathspec never matches).
KEYS = ("k1", "k2", "k3")
STEPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 2)),
    st.tuples(st.just("remove"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("other"), st.just(""), st.integers(0, 2)),
    st.tuples(st.just("archive-file"), st.just(""), st.integers(0, 1)),
)


def _archive_history(store: ObjectStore, steps: list[tuple[str, str, int]],
                     merges: list[int]) -> list[str]:
    """A chain of commits, each doing one of ``steps`` to its parent's tree; commit ``n`` in
    ``merges`` also merges a side branch off the commit three before it, whose one commit
    archives a result the chain's trees never show (git's walk follows it: a fold there)."""
    shas: list[str] = []
    tree: str | None = None
    for n, (kind, key, variant) in enumerate(steps):
        editor = TreeEditor(store, tree)
        path = f"archive/{key[-2:]}/{key}/result.yaml"
        if kind == "put":
            editor.put(path, store.write_blob(f"v{variant}".encode()))
        elif kind == "remove":
            editor.remove(path)
        elif kind == "other":
            editor.put(f"tasks/x{variant}.yaml", store.write_blob(str(n).encode()))
        elif variant:  # archive-file: archive/ as a file, then back to a directory
            editor.remove("archive")
            for k in KEYS:
                editor.remove(f"archive/{k[-2:]}/{k}/result.yaml")
            editor.put("archive", store.write_blob(b"not a dir"))
        else:
            editor.remove("archive")
            editor.put(f"archive/{KEYS[0][-2:]}/{KEYS[0]}/result.yaml", store.write_blob(b"r"))
        tree = editor.write()
        parents = tuple(shas[-1:])
        if n in merges and n >= 3:
            side = TreeEditor(store, store.commit(shas[-3]).tree)
            side.put(f"archive/{KEYS[2][-2:]}/{KEYS[2]}/result.yaml", store.write_blob(b"s"))
            parents += (store.write_commit(side.write(), (shas[-3],), IDENT, 2000 + n, "side"),)
        shas.append(store.write_commit(tree, parents, IDENT, 1000 + n, f"{n}"))
    return shas


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEPS, min_size=2, max_size=ANCESTRY_WALK + 12),
       merges=st.lists(st.integers(0, ANCESTRY_WALK + 12), max_size=2), data=st.data())
def test_the_ledger_read_in_process_is_gits(tmp_path: Path, steps: list[tuple[str, str, int]],
                                            merges: list[int], data: st.DataObject) -> None:
    """For any history of archive/ (adds, prunes, a file named archive, merges, more commits
    than the walk reads) and any readings of main in turn, the ledger walked in process holds
    exactly what it holds from git's log alone."""
    repo = tmp_path / f"ledger-{len(list(tmp_path.iterdir()))}.git"
    run_git(["init", "--quiet", "--bare", str(repo)])
    store = ObjectStore(repo)
    try:
        shas = _archive_history(store, steps, merges)
        readings = data.draw(st.lists(st.sampled_from(shas), min_size=1, max_size=4))
        walked, logged = FoldLedger(repo, store=store), FoldLedger(repo)
        for main in readings:
            assert walked.update(main) == logged.update(main), (steps, merges, main)
            assert walked.pruned == logged.pruned
    finally:
        store.close()


def test_a_main_a_few_commits_on_updates_the_ledger_without_a_process(
        tmp_path: Path, history_gits: list[list[str]]) -> None:
    """A move of main through one-parent commits (submits, prunes, an archive entry put) is
    read into the ledger with no git: adds and a prune seen in process; a rewritten main is
    read whole, by git's log."""
    repo = tmp_path / "ledger.git"
    run_git(["init", "--quiet", "--bare", str(repo)])
    store = ObjectStore(repo)
    logged = history_gits
    try:
        shas = _archive_history(store, [("other", "", 0), ("put", "k1", 0), ("other", "", 1),
                                        ("put", "k2", 0), ("remove", "k1", 0)], [])
        ledger = FoldLedger(repo, store=store)
        assert ledger.update(shas[0]) == {} and len(logged) == 1  # the first reading: git's
        assert ledger.update(shas[3]) == {"k1": shas[1], "k2": shas[3]}
        assert ledger.update(shas[4]) == {"k1": shas[1], "k2": shas[3]}
        assert ledger.pruned == {"k1"}
        assert len(logged) == 1
        merged = _archive_history(store, [*([("other", "", 0)] * 3), ("put", "k3", 1)], [3])
        assert ledger.update(merged[-1]) == {"k3": merged[-1]}  # no descendant: read whole
        assert len(logged) > 1
    finally:
        store.close()
