"""Wake-ups: an agent whose state repo's files are on its machine is woken when main moves,
whether it was given the plain path or a file:// URL, not at its next poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SilentStream, commit_files, git, make_state, poll, task_doc, task_files


@pytest.mark.parametrize("style", ["path", "file"])
def test_a_task_landing_wakes_an_idle_agent(tmp_path: Path, agents: Any, style: str) -> None:
    repo = make_state(tmp_path)
    url = str(repo) if style == "path" else f"file://{repo}"
    # Nothing else would wake it within the test's deadline: polls and heartbeats every 60 s.
    agent = agents(url, "agent-0", lease=300, heartbeat=60, poll_s=60)
    poll(lambda: agent.saw("started"), 60, lambda: f"agent did not start:\n{agent.tail()}")
    poll(lambda: git(["for-each-ref", "refs/agents/agent-0"], repo).strip(), 60,
         lambda: f"no first heartbeat:\n{agent.tail()}")  # its first reading is done
    commit_files(repo, task_files([task_doc("woken")]), tmp_path / "person")
    poll(lambda: agent.saw("claimed", "woken"), 20,
         lambda: f"the agent did not wake for the new task within 20 s:\n{agent.tail()}")


def test_main_moving_wakes_only_a_waiter_that_listens(tmp_path: Path) -> None:
    """A busy agent (no free slot) waits with ``refs=False``: new work on main does not wake
    it (under a task stream every such wake-up was a read of the repo for nothing), its own
    pokes still do, and a listening waiter is woken by the same move."""
    import threading
    import time

    from cluster.state.watch import Waker

    repo = make_state(tmp_path)
    waker = Waker(repo)
    waker.start()
    try:
        assert waker.watching
        commit_files(repo, task_files([task_doc("one")]), tmp_path / "person")
        begun = time.monotonic()
        assert not waker.wait(1.5, refs=False)  # main moved, but this waiter is busy
        assert time.monotonic() - begun >= 1.4
        threading.Timer(0.2, waker.poke).start()
        assert waker.wait(30, refs=False)  # a task of its own ended
        commit_files(repo, task_files([task_doc("two")]), tmp_path / "person")
        assert waker.wait(30, refs=True)  # a free agent is woken by the move
    finally:
        waker.stop()
    assert not waker.watching


def test_ref_events_stand_in_for_the_state_hosts_word_only_while_it_is_down(
        tmp_path: Path) -> None:
    """A file:// remote's agents hear of main's moves from its watch (which says what each
    move brought, so that few read); should the watch not run (a broken command, a package
    its interpreter cannot run from), main's own ref events wake them, not only the poll."""
    from cluster.state.watch import Waker

    repo = make_state(tmp_path)
    waker = Waker(repo)
    stream = waker.stream = SilentStream()
    waker.start()
    try:
        stream.live = True
        commit_files(repo, task_files([task_doc("told")]), tmp_path / "person")
        assert waker.wait(1.0) is None  # the stream tells of it (here: says nothing)
        stream.live = False
        commit_files(repo, task_files([task_doc("untold")]), tmp_path / "person")
        assert waker.wait(30) == "moved"
    finally:
        waker.stop()


def test_the_watcher_is_handed_only_ref_moves(tmp_path: Path) -> None:
    """Writes in the watched directories (a lock created, written and removed; a log appended
    in the repo's top directory, as a push leaves behind) reach no agent's Python: at 64
    agents on one machine the watchers' event handling cost more than their reads. Git's
    rename of a lock over its ref still wakes."""
    import os

    from cluster.state import watch

    repo = make_state(tmp_path)
    handed: list[str] = []
    real = watch._Handler.on_any_event

    def counting(self: Any, event: Any) -> None:
        handed.append(type(event).__name__)
        real(self, event)

    watch._Handler.on_any_event = counting  # type: ignore[method-assign]
    waker = watch.Waker(repo)
    waker.start()
    try:
        log, lock = repo / "push.log", repo / "refs" / "heads" / "other.lock"
        for n in range(20):
            with log.open("a") as out:
                out.write(f"push {n}\n")
            lock.write_text("0" * 40 + "\n")
            lock.unlink()
        main = repo / "refs" / "heads" / "main"
        sha = git(["rev-parse", "main"], repo).strip()
        main.with_name("main.lock").write_text(f"{sha}\n")
        os.rename(main.with_name("main.lock"), main)  # how git moves a ref
        assert waker.wait(30, refs=True), "a ref renamed into place did not wake the waiter"
        assert handed and set(handed) == {"FileMovedEvent"}, handed
    finally:
        waker.stop()
        watch._Handler.on_any_event = real  # type: ignore[method-assign]
