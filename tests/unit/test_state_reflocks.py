"""Ref locks left by git writers that died: cleared once stale, left to their writer before.

Every lock here is what git itself leaves: a ``<ref>.lock`` (or ``packed-refs.lock``) holding
the value a writer meant to write, which real git commands then run into.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from cluster.state.checker import check
from cluster.state.client import Held, StateClient
from cluster.state.gitcmd import run_git
from cluster.state.records import Result
from cluster.state.reflocks import STALE_LOCK_SECONDS, clear_if_stale, clear_stale, locks_named
from tests.clients import state_client
from tests.helpers import (
    commit_files,
    local_ssh,
    make_state,
    poll,
    ssh_url,
    state_url,
    task_doc,
    task_files,
)

DEAD_WRITER = "1" * 40 + "\n"  # what a writer killed between lock and rename leaves


def leave_lock(git_dir: Path, name: str, age: float) -> Path:
    """The lock a writer that died ``age`` seconds ago left on ref (or file) ``name``."""
    lock = git_dir / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(DEAD_WRITER)
    then = time.time() - age
    os.utime(lock, (then, then))
    return lock


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2, "retry_backoff_seconds": 0.1})
    commit_files(repo, task_files([task_doc("t1"), task_doc("t2"), task_doc("t3")]),
                 tmp_path / "person")
    return repo


def client(url: str, tmp_path: Path, name: str) -> tuple[StateClient, list[Path]]:
    c = state_client(url, tmp_path, name, work=f"work-{name}")
    cleared: list[Path] = []
    c.remote.on_stale_lock = cleared.append
    return c, cleared


def test_locks_named_reads_what_git_and_a_remote_say(repo: Path, tmp_path: Path) -> None:
    main = run_git(["rev-parse", "refs/heads/main"], git_dir=repo).stdout.strip()
    lock = leave_lock(repo, "refs/claims/t1", age=0)
    local = run_git(["update-ref", "refs/claims/t1", main], git_dir=repo, check=False)
    assert local.returncode != 0
    work = tmp_path / "w"
    run_git(["init", "--quiet", "--bare", str(work)])
    run_git(["fetch", "--quiet", str(repo), "refs/heads/main:refs/heads/main"], git_dir=work)
    pushed = run_git(["push", f"file://{repo}", "refs/heads/main:refs/claims/t1"],
                     git_dir=work, check=False)
    assert pushed.returncode != 0
    for stderr in (local.stderr, pushed.stderr):
        (named,) = locks_named(stderr)
        assert os.path.realpath(named) == os.path.realpath(lock)
    assert locks_named("error: failed to push some refs") == []


def test_a_fresh_lock_is_left_and_a_stale_one_cleared(tmp_path: Path) -> None:
    fresh = leave_lock(tmp_path, "refs/claims/a", age=1)
    stale = leave_lock(tmp_path, "refs/claims/b", age=STALE_LOCK_SECONDS + 5)
    assert clear_if_stale(fresh) is False and fresh.read_text() == DEAD_WRITER
    assert clear_if_stale(stale) is True and not stale.exists()
    assert clear_if_stale(stale) is False  # gone already: nothing to do
    assert sorted(p.name for p in (tmp_path / "refs/claims").iterdir()) == ["a.lock"]


def test_a_lock_outside_the_repository_is_never_touched(tmp_path: Path) -> None:
    elsewhere = leave_lock(tmp_path / "other.git", "refs/claims/a", age=3600)
    repo = tmp_path / "state.git"
    repo.mkdir()
    sneaky = repo / ".." / "other.git" / "refs/claims/a.lock"
    assert clear_stale([elsewhere, sneaky], repo) == []
    assert elsewhere.exists()


def test_a_live_writers_lock_that_replaced_the_stale_one_is_put_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = leave_lock(tmp_path, "refs/claims/a", age=3600)
    live = "2" * 40 + "\n"
    rename = Path.rename

    def raced(self: Path, target: Any) -> Path:
        # Between our look and our rename: another agent clears the stale lock and a live
        # writer takes the ref's lock anew.
        if self == lock:
            lock.unlink()
            lock.write_text(live)
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", raced)
    assert clear_if_stale(lock) is False
    assert lock.read_text() == live
    assert [p.name for p in lock.parent.iterdir()] == ["a.lock"]  # nothing left aside


@pytest.mark.parametrize("style", ["path", "file"])
def test_a_claim_ref_locked_by_a_dead_writer_is_claimed_once_the_lock_is_stale(
        repo: Path, tmp_path: Path, style: str) -> None:
    c, cleared = client(state_url(repo, style), tmp_path, "a")
    lock = leave_lock(repo, "refs/claims/t1", age=5)
    snap = c.snapshot()
    assert c.claim(snap, snap.tasks["t1"], 30) is None  # young: maybe a live writer's
    assert lock.read_text() == DEAD_WRITER and cleared == []
    os.utime(lock, (time.time() - STALE_LOCK_SECONDS - 1,) * 2)
    held = c.claim(snap, snap.tasks["t1"], 30)
    assert isinstance(held, Held)
    assert not lock.exists()
    assert [os.path.realpath(p) for p in cleared] == [os.path.realpath(lock)]
    assert c.finish(held, Result(task="t1", status="succeeded", attempt=1, agent="a"))
    assert check(repo).tasks["t1"] == ("done", "succeeded")
    c.close()


@pytest.mark.parametrize("style", ["path", "file"])
def test_a_stale_packed_refs_lock_does_not_stop_folds(
        repo: Path, tmp_path: Path, style: str) -> None:
    c, cleared = client(state_url(repo, style), tmp_path, "a")
    snap = c.snapshot()
    held = c.claim(snap, snap.tasks["t1"], 30)
    assert isinstance(held, Held)
    assert c.finish(held, Result(task="t1", status="succeeded", attempt=1, agent="a"))
    lock = leave_lock(repo, "packed-refs", age=STALE_LOCK_SECONDS + 60)
    assert c.fold(c.snapshot(), 10) == 1  # deleting the claim ref takes packed-refs.lock
    assert not lock.exists() and len(cleared) == 1
    after = c.snapshot()
    assert "t1" in after.archived and "t1" not in after.claims
    c.close()


def test_a_renewal_that_meets_a_held_lock_keeps_the_claim(repo: Path, tmp_path: Path) -> None:
    c, _ = client(str(repo), tmp_path, "a")
    snap = c.snapshot()
    held = c.claim(snap, snap.tasks["t1"], 30)
    assert isinstance(held, Held)
    lock = leave_lock(repo, "refs/claims/t1", age=0)
    renewed, lost, _ = c.renew([held], None, None)
    assert lost == set() and renewed["t1"] == held  # not renewed this time, not lost either
    lock.unlink()
    renewed, lost, _ = c.renew([held], None, None)
    assert lost == set() and renewed["t1"].tip != held.tip
    c.close()


def test_a_mirror_lock_left_by_a_killed_fetch_is_cleared_once_stale(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", local_ssh(tmp_path / "ssh"))
    c, cleared = client(ssh_url(repo), tmp_path, "a")
    c.snapshot()
    mirror = c.remote.mirror
    commit_files(repo, task_files([task_doc("t4")]), tmp_path / "person")
    lock = leave_lock(mirror, "refs/mirror/heads/main", age=STALE_LOCK_SECONDS + 5)
    assert "t4" in c.snapshot().tasks
    assert not lock.exists() and len(cleared) == 1
    c.close()


@pytest.mark.parametrize("style", ["path", "file"])
def test_an_agent_goes_on_with_other_work_and_takes_the_locked_task_when_stale(
        repo: Path, tmp_path: Path, agents: Any, style: str) -> None:
    lock = leave_lock(repo, "refs/claims/t1", age=0)
    agent = agents(state_url(repo, style), "a", lease=5, heartbeat=0.5, poll_s=0.2,
                   exit_when_idle=True)
    # While the lock may be a live writer's, the agent neither spins on the task nor lets it
    # hold up the others ...
    poll(lambda: agent.saw("published", "t2") and agent.saw("published", "t3"), 60,
         lambda: f"the other tasks to be done meanwhile:\n{agent.tail()}")
    assert agent.saw("claim_rejected", "t1") and lock.exists()
    # ... and once it is old enough to be a dead writer's, clears it and takes the task.
    os.utime(lock, (time.time() - STALE_LOCK_SECONDS - 1,) * 2)
    assert agent.wait(60) == 0, agent.tail()
    events = agent.events()
    assert [e["task"] for e in events if e["event"] == "published"][-1] == "t1"
    rejected = [e for e in events if e["event"] == "claim_rejected"]
    assert all(e["task"] == "t1" for e in rejected)
    delays = [e["retry_in"] for e in rejected]
    assert delays == sorted(delays) and delays[0] == 0.5, delays  # backing off, not spinning
    assert [e["lock"] for e in events if e["event"] == "stale_lock_cleared"] == [str(lock)]
    assert check(repo).summary()["done"] == 3



def test_an_agent_restarted_after_a_crash_clears_its_own_mirror_before_it_starts(
        repo: Path, tmp_path: Path, agents: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", local_ssh(tmp_path / "ssh"))
    url = ssh_url(repo)  # a remote elsewhere: read through the agent's mirror
    assert agents(url, "a", poll_s=0.2, exit_when_idle=True).wait(60) == 0
    (mirror,) = (tmp_path / "agents" / "a").glob("mirror-*.git")
    # A fetch killed with its agent (SIGKILL, a reboot) leaves these, fresh.
    left = [leave_lock(mirror, "refs/mirror/heads/main", age=0),
            leave_lock(mirror, "packed-refs", age=0)]
    commit_files(repo, task_files([task_doc("t4")]), tmp_path / "person")
    again = agents(url, "a", poll_s=0.2, exit_when_idle=True)
    assert again.wait(60) == 0, again.tail()
    events = [e for e in again.events() if e["event"] != "heartbeat"]
    run = events[next(i for i, e in enumerate(events) if e["event"] == "stopped") + 1:]
    cleared = [e["lock"] for e in run if e["event"] == "stale_lock_cleared"]
    assert sorted(cleared) == sorted(map(str, left))
    assert run[len(cleared)]["event"] == "started"  # cleared before the first fetch
    assert not any(e["event"] == "remote_unavailable" for e in run)
    assert check(repo).tasks["t4"] == ("done", "succeeded")


def test_a_second_process_for_the_same_agent_and_workdir_is_refused(
        repo: Path, agents: Any) -> None:
    first = agents(repo, "a", poll_s=0.2)
    poll(lambda: first.saw("started"), 30, "the first agent to start")
    second = agents(repo, "a", poll_s=0.2)
    assert second.wait(30) == 2
    assert "agent a already runs with work directory" in second.tail()
    assert f"(pid {first.proc.pid})" in second.tail()
    assert first.proc.poll() is None
