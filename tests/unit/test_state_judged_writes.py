"""Writes to a ``file://`` state repo go under its rules without a push (cluster.state.judgedwrite).

The writes come from the hook's own table of pushes (tests.unit.test_hooks_lean.CASES), good
and bad, through the agents' StateRemote: with the judge serving, every one is judged by it
and lands exactly when the hook would take it; without one (none, a dead socket, a judge of
another release) each is pushed and the installed hook judges it. A writer that moved refs
without asking would land the bad ones: every case that the rules refuse fails on such code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cluster.hooks import ask, judged
from cluster.hooks import push as push_module
from cluster.hooks.push import parse_updates
from cluster.state import gitcmd
from cluster.state import remote as remote_module
from cluster.state.checker import check
from cluster.state.gitcmd import PushReport, RefUpdate
from cluster.state.gitobj import ObjectStore
from cluster.state.init import install_hooks
from cluster.state.localrefs import read_refs
from cluster.state.remote import StateRemote
from tests.helpers import ROOT, commit_files, make_state, poll, task_doc, task_files
from tests.unit.test_hooks_lean import CASES, Repo, build_repo, repo

__all__ = ["repo"]  # the fixture, shared with test_hooks_lean

PROTOCOL_REFS = ["refs/heads", "refs/claims", "refs/agents"]
Pushes = list[Sequence[RefUpdate]]


def updates_of(lines: list[str]) -> list[RefUpdate]:
    """The ref updates that pre-receive's ``lines`` describe, as the hook parses them."""
    return [RefUpdate(u.ref, u.new, u.old) for u in parse_updates(lines)]


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> Pushes:
    """Every push StateRemote makes (each still made, through receive-pack and the hook)."""
    made: Pushes = []
    real: Callable[..., PushReport] = gitcmd.push

    def push(git_dir: Path, url: str, updates: Sequence[RefUpdate], **kw: Any) -> PushReport:
        made.append(list(updates))
        return real(git_dir, url, updates, **kw)

    monkeypatch.setattr(remote_module, "push", push)
    return made


@pytest.fixture
def file_remote(repo: Repo, tmp_path: Path) -> Iterator[StateRemote]:
    remote = StateRemote(f"file://{repo.path}", tmp_path / "writer")
    yield remote
    remote.close()


def write(remote: StateRemote, repo: Repo, name: str) -> tuple[bool, bool]:
    """Case ``name`` written through ``remote``: (did the refs change as it says, should they
    have); a refusal must leave every ref as it was."""
    lines, ok = CASES[name](repo)
    updates = updates_of(lines)
    before = read_refs(repo.path, PROTOCOL_REFS)
    report = remote.push(updates, atomic=True)
    after = read_refs(repo.path, PROTOCOL_REFS)
    wanted = dict(before)
    for u in updates:
        if u.new is None:
            wanted.pop(u.ref, None)
        else:
            wanted[u.ref] = u.new
    if report.ok:
        return after == wanted, ok
    assert after == before, f"{name}: refused, yet refs changed"
    return False, ok


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The object readers (a ``git cat-file`` each) opened for one push's judging."""
    opened: list[Path] = []

    class Counted(ObjectStore):
        def __init__(self, git_dir: Path, env: Mapping[str, str] | None = None) -> None:
            opened.append(git_dir)
            super().__init__(git_dir, env)

    monkeypatch.setattr(push_module, "ObjectStore", Counted)
    return opened


@pytest.mark.parametrize("name", sorted(CASES))
def test_with_the_judge_serving_each_write_is_judged_there_and_none_is_pushed(
        repo: Repo, file_remote: StateRemote, pushes: Pushes, readers: list[Path],
        name: str) -> None:
    with judged.serving(repo.path) as server:
        landed, ok = write(file_remote, repo, name)
        assert server.answered == 1, f"{name}: not asked of the judge"
    assert landed == ok, f"{name}: {'refused' if ok else 'landed'}"
    assert pushes == []  # no receive-pack: the judge's verdict, then the ref transaction
    assert readers == []  # the objects are the repository's: read by the judge's own reader


def test_a_pushs_quarantined_objects_are_read_through_its_own_reader(
        repo: Repo, readers: list[Path]) -> None:
    """A hook's request names the quarantine its push's objects wait in: the judge reads
    them there, never through its reader of the repository, which cannot see them."""
    lines, ok = CASES["first claim"](repo)
    quarantine = repo.path / "objects"  # the objects are here: only the reader's choice counts
    with judged.serving(repo.path) as server:
        reply = server.answer(ask.encode(str(repo.path), [f"{x}\n" for x in lines], {
            "GIT_DIR": str(repo.path), "GIT_QUARANTINE_PATH": str(quarantine),
            "GIT_OBJECT_DIRECTORY": str(quarantine)}))
    assert reply.startswith(b"0") and ok
    assert readers == [repo.path]


@pytest.mark.parametrize("name", ["first claim", "claim of a task not on main",
                                  "claim deleted without a fold", "heartbeat of another agent"])
@pytest.mark.parametrize("judge", ["none", "dead socket", "another release"])
def test_without_a_judges_answer_each_write_is_pushed_to_the_hook(
        repo: Repo, file_remote: StateRemote, pushes: Pushes, monkeypatch: pytest.MonkeyPatch,
        name: str, judge: str) -> None:
    """No judge, a socket nobody listens on (a killed judge's), a judge that declines (of
    another release): the write is a push, refused or taken by the installed hook as it
    would be by the judge."""
    if judge == "dead socket":
        with judged.serving(repo.path):
            dead = judged.socket_path(repo.path)
            kept = dead.with_name("kept.sock")
            dead.rename(kept)  # the socket file outlives its server, as after a SIGKILL
        kept.rename(dead)
    if judge == "another release":
        monkeypatch.setattr(judged, "__version__", "0.0.0-another")
        with judged.serving(repo.path) as server:
            landed, ok = write(file_remote, repo, name)
            assert server.answered == 0
    else:
        landed, ok = write(file_remote, repo, name)
    assert landed == ok, f"{name}: {'refused' if ok else 'landed'}"
    assert len(pushes) == 1


def test_a_repository_whose_socket_path_is_too_long_for_an_address_is_asked_all_the_same(
        tmp_path: Path, pushes: Pushes) -> None:
    """A unix socket's address holds 107 bytes; the judge binds its socket by a name relative
    to the repository, and the writer reaches it through a descriptor of the repository."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    long_repo = build_repo(deep / "state.git")
    assert len(str(judged.socket_path(long_repo.path))) > 108
    remote = StateRemote(f"file://{long_repo.path}", tmp_path / "writer")
    try:
        with judged.serving(long_repo.path) as server:
            landed, ok = write(remote, long_repo, "first claim")
            assert server.answered == 1
        assert landed and ok and pushes == []
    finally:
        remote.close()
        long_repo.store.close()


def test_agents_over_file_with_the_judge_finish_their_work_judged(
        tmp_path: Path, agents: Any) -> None:
    """Agents over file:// beside a judge: every task done once, folded, and the judge asked
    for their claims, results, heartbeats and folds."""
    state = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    install_hooks(state, ROOT / "hooks")
    ids = [f"j{n}" for n in range(6)]
    commit_files(state, task_files([task_doc(i) for i in ids]), tmp_path / "person")
    with judged.serving(state) as server:
        started = [agents(f"file://{state}", f"agent-{n}", exit_when_idle=True, poll_s=0.2)
                   for n in range(2)]
        for agent in started:
            assert agent.wait(90) == 0, agent.tail()
        answered = server.answered
    poll(lambda: not read_refs(state, ["refs/claims"]), 30, "every claim folded")
    report = check(state)
    assert report.summary()["duplicated"] == 0
    assert {k: v for k, v in report.tasks.items() if k in ids} == dict.fromkeys(
        ids, ("done", "succeeded"))
    assert answered >= 2 * len(ids)  # a claim and a result a task at least, all judged there
