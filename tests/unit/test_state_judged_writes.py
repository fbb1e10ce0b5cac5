"""Writes to a ``file://`` state repo go under its rules without a push (cluster.state.judgedwrite).

The writes come from the hook's own table of pushes (tests.unit.test_hooks_lean.CASES), good
and bad, through the agents' StateRemote: with the judge serving, every one is judged by it
and lands exactly when the hook would take it; without one (none, a dead socket, a judge of
another release) each is pushed and the installed hook judges it. A writer that moved refs
without asking would land the bad ones: every case that the rules refuse fails on such code.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cluster.hooks import ask, judged
from cluster.hooks import push as push_module
from cluster.hooks.push import parse_updates
from cluster.state import gitcmd, gitobj
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


def loose_objects(git_dir: Path) -> set[Path]:
    return {p for p in (git_dir / "objects").glob("[0-9a-f][0-9a-f]/*")}


def quarantined(repo: Repo, name: str) -> tuple[list[str], bool, Path, list[Path]]:
    """``name``'s push as receive-pack holds it before pre-receive: the objects the case wrote
    moved out of the repository into a quarantine of its own (``objects/incoming-*``)."""
    before = loose_objects(repo.path)
    lines, ok = CASES[name](repo)
    quarantine = repo.path / "objects" / "incoming-test"
    moved = []
    for path in sorted(loose_objects(repo.path) - before):
        target = quarantine / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        moved.append(target)
    return lines, ok, quarantine, moved


def ask_quarantined(server: judged.JudgeServer, repo: Repo, lines: list[str],
                    quarantine: Path) -> bytes:
    """The request the installed hook sends for a push held in ``quarantine``."""
    return server.answer(ask.encode(str(repo.path), [f"{x}\n" for x in lines], {
        "GIT_DIR": str(repo.path), "GIT_QUARANTINE_PATH": str(quarantine),
        "GIT_OBJECT_DIRECTORY": str(quarantine),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.path / "objects")}))


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every git an object reader starts (``cat-file --batch``), from here on."""
    argvs: list[list[str]] = []
    real = gitcmd.start_git

    def start_git(args: list[str], **kw: Any) -> Any:
        argvs.append(args)
        return real(args, **kw)

    monkeypatch.setattr(gitobj, "start_git", start_git)
    return argvs


@pytest.mark.parametrize("name", ["first claim", "renewal", "result on the holder's claim",
                                  "claim of a task not on main", "heartbeat of another agent"])
def test_a_pushs_quarantined_loose_objects_are_read_without_a_reader_of_its_own(
        repo: Repo, started: list[list[str]], name: str) -> None:
    """A hook's request names the quarantine its push's objects wait in (objects no reader of
    the repository sees): the judge reads them there in process and the rest through its one
    reader of the repository, and judges as the hook would, starting no process."""
    lines, ok, quarantine, moved = quarantined(repo, name)
    assert moved, "the case wrote no object: nothing to read from a quarantine"
    with judged.serving(repo.path) as server:
        server.store.read(repo.blob)  # the judge's reader of the repository, running
        started.clear()
        reply = ask_quarantined(server, repo, lines, quarantine)
    assert reply.startswith(b"0") == ok, f"{name}: {reply!r}"
    assert started == []


def test_an_object_in_a_quarantine_that_is_not_what_its_name_says_is_not_read_as_it(
        repo: Repo) -> None:
    """A file in the quarantine under an object's name holding another object (or garbage)
    is not taken for it: the push is judged as one missing that object, and refused."""
    lines, ok, quarantine, moved = quarantined(repo, "first claim")
    assert ok
    other = zlib.compress(b"blob 5\0other")
    for path in moved:
        path.write_bytes(other)
    with judged.serving(repo.path) as server:
        assert ask_quarantined(server, repo, lines, quarantine).startswith(b"1")
    assert gitobj.read_loose(quarantine, "../" * 8 + "dev/zero") is None  # a name, no file
    assert gitobj.read_loose(quarantine, moved[0].parent.name + moved[0].name) is None


@pytest.mark.parametrize("shape", ["a pack", "another alternate", "alternates of its own"])
def test_a_quarantine_the_loose_reading_cannot_see_in_full_gets_a_reader_of_its_own(
        repo: Repo, started: list[list[str]], shape: str) -> None:
    """A push kept as a pack (or a quarantine borrowing from elsewhere too) is read through a
    reader that git points at the quarantine, as before: never judged half seen."""
    lines, ok, quarantine, _ = quarantined(repo, "first claim")
    (quarantine / "pack").mkdir()
    env = {"GIT_DIR": str(repo.path), "GIT_QUARANTINE_PATH": str(quarantine),
           "GIT_OBJECT_DIRECTORY": str(quarantine),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.path / "objects")}
    if shape == "a pack":
        (quarantine / "pack" / "pack-0.pack").write_bytes(b"")
    elif shape == "another alternate":
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] += f":{repo.path.parent}"
    else:
        (quarantine / "info").mkdir()
        (quarantine / "info" / "alternates").write_text(f"{repo.path / 'objects'}\n")
    with judged.serving(repo.path) as server:
        server.store.read(repo.blob)
        started.clear()
        reply = server.answer(ask.encode(str(repo.path), [f"{x}\n" for x in lines], env))
    assert reply.startswith(b"0") == ok
    assert [args[:2] for args in started] == [["cat-file", "--batch"]]


def test_a_real_push_beside_the_judge_is_judged_with_no_reader_started(
        repo: Repo, tmp_path: Path, started: list[list[str]]) -> None:
    """A push from another repository (its objects new to this one: receive-pack unpacks
    them into a quarantine) is judged by the judge without a reader started for it."""
    source = tmp_path / "source.git"
    gitcmd.run_git(["clone", "--quiet", "--bare", str(repo.path), str(source)])
    lines, ok = CASES["first claim"](build_repo_view(repo, source))
    with judged.serving(repo.path) as server:
        server.store.read(repo.blob)
        started.clear()
        report = gitcmd.push(source, f"file://{repo.path}", updates_of(lines))
        assert server.answered == 1
    assert report.ok == ok
    assert started == []


def build_repo_view(repo: Repo, git_dir: Path) -> Repo:
    """``repo``'s cases written into ``git_dir`` (a clone): the objects land there alone."""
    return Repo(git_dir, ObjectStore(git_dir), repo.blob, repo.held)


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
