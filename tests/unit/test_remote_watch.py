"""The state host's stream of main's moves (cluster.state.refwatch) and the agent's side of it
(cluster.state.remotewatch): real repos, real pushes, the real script; the ssh hop is a local
stand-in here (tests/integration/test_remote_watch.py takes it through a real sshd)."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.state import refwatch
from cluster.state.ids import archive_path
from cluster.state.remotewatch import (
    Arrivals,
    RemoteWatch,
    SshRepo,
    for_remote,
    parse,
    parse_claimed,
    ssh_argv,
    ssh_repo,
)
from tests.helpers import (
    ROOT,
    commit_files,
    free_port,
    git,
    local_ssh,
    main_of,
    make_state,
    poll,
    scrape,
    ssh_url,
    task_doc,
    task_files,
)

WATCH = [sys.executable, "-m", "cluster.state.refwatch"]


class Heard:
    """What a listener is told (cluster.state.remotewatch.Hints), each call through ``each``."""

    def __init__(self, each: Callable[[str, Any], None] = lambda what, value: None) -> None:
        self.moves: list[Arrivals] = []
        self.claims: list[tuple[str, ...]] = []
        self._each = each

    def moved(self, arrivals: Arrivals = None) -> None:
        self.moves.append(arrivals)
        self._each("moved", arrivals)

    def claimed(self, keys: tuple[str, ...]) -> None:
        self.claims.append(keys)
        self._each("claimed", keys)


class Lines:
    """A watch process's stdout, read by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.got: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, out: Any) -> None:
        for line in out:
            self.got.append(line.strip())

    def saw(self, sha: str) -> bool:
        return any(line.split()[:1] == [sha] for line in self.got)


def _watch(repo: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*WATCH, str(repo), *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)  # fmt: skip


def _follows_a_move(repo: Path, lines: Lines, tmp_path: Path) -> None:
    """Main's commit comes first, then the commit a push moved it to."""
    poll(lambda: lines.saw(main_of(repo)), 30, "main's commit as the first line")
    commit_files(repo, task_files([task_doc("one")]), tmp_path / "person")
    moved = main_of(repo)
    poll(lambda: lines.saw(moved), 30, lambda: f"the move to {moved}: {lines.got}")


def test_the_watch_says_main_now_and_at_every_move_packed_or_loose(tmp_path: Path) -> None:
    repo = make_state(tmp_path)
    proc = _watch(repo)
    lines = Lines(proc)
    try:
        _follows_a_move(repo, lines, tmp_path)
        git(["pack-refs", "--all"], repo)  # main now in packed-refs alone
        assert not (repo / "refs" / "heads" / "main").exists()
        commit_files(repo, task_files([task_doc("two")]), tmp_path / "person")
        git(["pack-refs", "--all"], repo)
        packed = main_of(repo)
        poll(lambda: lines.saw(packed), 30, lambda: f"the packed move to {packed}: {lines.got}")
        assert all(parse(line) is not None for line in lines.got), lines.got
        # sshd closes the session's stdin when the agent goes: the watcher leaves with it
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_without_inotify_the_watch_looks_at_the_ref_files(tmp_path: Path) -> None:
    """Where inotify is not to be had (instances spent by a large fleet's watchers) it still
    reports every move, from the ref files."""
    repo = make_state(tmp_path)
    code = ("import sys; from cluster.state import refwatch as r; r._inotify = lambda repo: None;"
            " sys.exit(r.main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(repo)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    lines = Lines(proc)
    try:
        _follows_a_move(repo, lines, tmp_path)
    finally:
        proc.kill()
        proc.wait()


def test_the_watch_takes_one_repository_and_nothing_else(tmp_path: Path) -> None:
    """Under git-shell an agent's key may run this command with any arguments: it reads one
    bare repo's ref files, takes no option and says nothing on stdout otherwise."""
    repo = make_state(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    for args in ([], [str(repo), str(repo)], ["--help"], ["-c", "id"], [str(plain)],
                 [str(tmp_path / "missing")], [f"--upload-pack={repo}"], [""]):  # fmt: skip
        done = subprocess.run([*WATCH, *args], capture_output=True, text=True, cwd=ROOT,
                              stdin=subprocess.DEVNULL, timeout=30, check=False)  # fmt: skip
        assert done.returncode == 2, (args, done)
        assert done.stdout == ""
        assert "usage: claude-cluster-watch REPO" in done.stderr


def test_main_is_read_from_loose_then_packed_refs_and_garbage_is_none(tmp_path: Path) -> None:
    repo = make_state(tmp_path)
    sha = main_of(repo)
    assert refwatch.read_main(repo) == sha
    (repo / "refs" / "heads" / "main").unlink()
    (repo / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    assert refwatch.read_main(repo) == sha
    (repo / "packed-refs").write_text("not a sha refs/heads/main\n\x00\xff")
    assert refwatch.read_main(repo) == refwatch.NONE


def test_ssh_urls_name_the_host_port_and_path_git_would() -> None:
    assert ssh_repo("ssh://git@state.example:2222/srv/state.git") == SshRepo(
        "git@state.example", 2222, "/srv/state.git")
    assert ssh_repo("ssh://state/srv/state%20x.git") == SshRepo("state", None, "/srv/state x.git")
    assert ssh_repo("ssh://state/~git/state.git") == SshRepo("state", None, "~git/state.git")
    assert ssh_repo("git@state.example:repos/state.git") == SshRepo(
        "git@state.example", None, "repos/state.git")
    for other in ("https://github.com/acme/state.git", "file:///srv/state.git",
                  "/srv/state.git", "./state.git", "ssh://state", "ssh://:22/x"):  # fmt: skip
        assert ssh_repo(other) is None, other
    assert for_remote("ssh://state/srv/state.git", "", Heard(), lambda a, b: None) is None


_PATHS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                 max_size=40)


@given(path=_PATHS, port=st.none() | st.integers(1, 65535))
def test_any_path_reaches_the_watch_as_one_argument(path: str, port: int | None) -> None:
    """The path travels in the remote command, which the far side's shell (or git-shell's
    split_cmdline) splits: whatever it holds, it stays one argument, and no text of it runs."""
    argv = ssh_argv(SshRepo("git@state", port, path), "claude-cluster-watch", {})
    assert argv[0] == "ssh"
    assert argv[-2] == "git@state" and argv[-3] == "--"
    assert shlex.split(argv[-1]) == ["claude-cluster-watch", path]
    assert ("-p" in argv) == (port is not None)


def test_a_git_ssh_command_is_run_by_a_shell_as_git_runs_it(tmp_path: Path) -> None:
    argv = ssh_argv(SshRepo("state", None, "/srv/s.git"), "claude-cluster-watch",
                    {"GIT_SSH_COMMAND": "ssh -i '/keys/a key' -o BatchMode=yes"})  # fmt: skip
    script = tmp_path / "show"
    script.write_text('#!/bin/sh\nfor a; do echo "[$a]"; done\n')
    script.chmod(0o755)
    argv[2] = argv[2].replace("ssh -i", f"{script} -i", 1)
    shown = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split("\n")
    assert shown[:4] == ["[-i]", "[/keys/a key]", "[-o]", "[BatchMode=yes]"]
    assert "[claude-cluster-watch /srv/s.git]" in shown


def test_a_hostile_or_broken_stream_only_falls_back_to_polling(tmp_path: Path) -> None:
    """Whatever comes down the stream (garbage, an endless line, an error and exit), the agent's
    side reports it, treats it as a hint to read, and tries again later; nothing it says can
    make it act on more than a hint."""
    said: list[tuple[str, str]] = []
    heard = Heard()
    moves = heard.moves
    for body, why in (("printf 'x%.0s' $(seq 1 5000); echo", "not a commit"),
                      ("echo 'rm -rf /'", "not a commit"),
                      ("echo 'no such command' >&2; exit 127", "(exit 127): no such command"),
                      ("exit 0", "exit 0")):  # fmt: skip
        said.clear()
        moves.clear()
        argv = [local_ssh(tmp_path, body), "state", "claude-cluster-watch /x"]
        watch = RemoteWatch(argv).listen(heard, lambda a, b: said.append((a, b)))
        watch.start()
        try:
            poll(lambda: said, 30, f"the end of the stream for {body!r}")
        finally:
            watch.stop()
        what, detail = said[0]
        assert what == "watch_lost" and why in detail, said
        assert moves and not watch.live


def test_an_agent_on_ssh_hears_of_new_work_from_the_stream_not_a_poll(
        tmp_path: Path, agents: Any, monkeypatch: Any) -> None:
    """Polls and heartbeats every 60 s: only the state host's stream can wake it for a task
    within the deadline (with ``state_watch_command: ""`` this fails: it waits for its poll)."""
    repo = make_state(tmp_path)
    monkeypatch.setenv("GIT_SSH_COMMAND", local_ssh(tmp_path))
    monkeypatch.setenv("GIT_SSH_VARIANT", "ssh")
    url = ssh_url(repo)
    agent = agents(url, "agent-0", lease=300, heartbeat=60, poll_s=60)
    poll(lambda: agent.saw("watch_live"), 60, lambda: f"no stream:\n{agent.tail()}")
    poll(lambda: git(["for-each-ref", "refs/agents/agent-0"], repo).strip(), 60,
         lambda: f"no first heartbeat:\n{agent.tail()}")
    commit_files(repo, task_files([task_doc("streamed")]), tmp_path / "person")
    poll(lambda: agent.saw("claimed", "streamed"), 20,
         lambda: f"the agent did not hear of the task within 20 s:\n{agent.tail()}")
    assert not agent.saw("watch_lost"), agent.tail()


def test_the_watch_runs_as_a_file_with_the_standard_library_alone(tmp_path: Path) -> None:
    """The file a state host without the package is given (refwatch.script: ``python -S``, no
    site-packages): it must start, and say its usage when given no repo, with nothing of the
    project importable. An import of the project in it fails this."""
    script = tmp_path / "claude-cluster-watch"
    script.write_bytes(refwatch.script(sys.executable))
    script.chmod(0o755)
    done = subprocess.run([str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2 and "usage: claude-cluster-watch" in done.stderr, done.stderr


@pytest.mark.parametrize("session", ["claude-cluster-session", ""])
def test_an_idle_streaming_agents_heartbeats_read_nothing(
        tmp_path: Path, agents: Any, monkeypatch: Any, session: str) -> None:
    """While the stream runs, an idle agent's heartbeat is a write alone (at 256 agents a read
    after each heartbeat was most of what the state host served); the stream still tells it
    of work. Over the state session and over git's transport (the session off) alike; reads
    are counted by the agent's own metrics: with a read per heartbeat this fails."""
    repo = make_state(tmp_path)
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_session_command: '{session}'\n")
    port = free_port()
    monkeypatch.setenv("GIT_SSH_COMMAND", local_ssh(tmp_path))
    monkeypatch.setenv("GIT_SSH_VARIANT", "ssh")
    agent = agents(ssh_url(repo), "agent-0", lease=30, heartbeat=1, poll_s=60,
                   extra=["--config", str(config), "--metrics-port", str(port)])  # fmt: skip
    poll(lambda: agent.saw("watch_live") and agent.saw("metrics"), 60,
         lambda: f"no stream:\n{agent.tail()}")
    reads = _reads(port)

    def beat() -> str:
        return git(["for-each-ref", "--format=%(objectname)", "refs/agents/agent-0"], repo)

    poll(beat, 60, lambda: f"no first heartbeat:\n{agent.tail()}")
    before, beats = reads(), {beat()}

    def five_more() -> bool:
        beats.add(beat())
        return len(beats) > 5

    poll(five_more, 60, lambda: f"five heartbeats a second apart:\n{agent.tail()}")
    assert reads() - before <= 1, agent.tail()  # a poll's at most
    commit_files(repo, task_files([task_doc("after-beats")]), tmp_path / "person")
    poll(lambda: agent.saw("claimed", "after-beats"), 30,
         lambda: f"the stream no longer told of work:\n{agent.tail()}")


def test_agents_of_one_process_share_one_stream(tmp_path: Path, monkeypatch: Any) -> None:
    """sshd allows 10 sessions per connection by default: agents of one process reaching the
    same state host over one multiplexed connection share one watch, each told of every move
    (one joining late too), and the stream ends with its last listener."""
    repo = make_state(tmp_path)
    started = tmp_path / "started"
    body = f'echo run >> {started}\nfor last; do :; done\nexec sh -c "$last"'
    monkeypatch.setenv("GIT_SSH_COMMAND", local_ssh(tmp_path, body))
    url = ssh_url(repo)
    heard: dict[str, list[str]] = {"a": [], "b": []}
    a = for_remote(url, "claude-cluster-watch",
                   Heard(lambda what, _: heard["a"].append(main_of(repo))),
                   lambda what, detail: heard["a"].append(what))  # fmt: skip
    b = for_remote(url, "claude-cluster-watch",
                   Heard(lambda what, _: heard["b"].append(main_of(repo))),
                   lambda what, detail: heard["b"].append(what))  # fmt: skip
    assert a is not None and b is not None and a.watch is b.watch
    a.start()
    try:
        poll(lambda: a.live, 30, lambda: f"the stream to start: {heard}")
        b.start()  # joins the running stream: told it is live, and to read
        poll(lambda: "watch_live" in heard["b"], 30, lambda: f"b told: {heard}")
        commit_files(repo, task_files([task_doc("shared")]), tmp_path / "person")
        moved = main_of(repo)
        poll(lambda: moved in heard["a"] and moved in heard["b"], 30, lambda: f"{heard}")
        a.stop()  # b still listens: the stream goes on
        assert b.live
        commit_files(repo, task_files([task_doc("after")]), tmp_path / "person")
        again = main_of(repo)
        poll(lambda: again in heard["b"], 30, lambda: f"{heard}")
        assert again not in heard["a"]
        assert started.read_text().count("run") == 1  # one ssh for both
    finally:
        a.stop()
        b.stop()
    assert b.watch._thread is None
    assert not b.watch.live


def test_a_landing_is_told_with_its_tasks_and_anything_else_as_the_commit_alone(
        tmp_path: Path) -> None:
    """A move that can bring no work but the task files it added names them (so that only
    their lines' first agents read; a removal, as a fold's, names none); a changed file, any
    other path, a task file the watch cannot read plainly: the commit alone, which every free
    agent reads."""
    repo = make_state(tmp_path)
    proc = _watch(repo)
    lines = Lines(proc)
    person = tmp_path / "person"

    def told(files: dict[str, str | bytes | None]) -> str:
        commit_files(repo, files, person)
        sha = main_of(repo)
        poll(lambda: lines.saw(sha), 30, lambda: f"{sha}: {lines.got}")
        return next(line for line in lines.got if line.split()[0] == sha)

    try:
        poll(lambda: lines.got, 30, "the first line")
        landed = told(task_files([task_doc("one"), task_doc("two", specialty="frontend")]))
        assert parse(landed) == (main_of(repo), (("one", "backend"), ("two", "frontend")))
        quoted = "id: three\ntitle: x\nspecialty: 'testing'  # the tests\n"
        assert parse(told({"tasks/three.yaml": quoted})) == (main_of(repo), (("three", "testing"),))
        assert parse(told({"tasks/one.yaml": None})) == (main_of(repo), ())  # withdrawn
        base = archive_path("two")
        folded: dict[str, str | bytes | None] = {
            "tasks/two.yaml": None, f"{base}/task.yaml": "id: two\n",
            f"{base}/result.yaml": "status: succeeded\n"}  # fmt: skip
        assert parse(told(folded)) == (main_of(repo), ())  # a fold brings no work
        others: list[dict[str, str | bytes | None]] = [
            {"tasks/three.yaml": yaml_task("three", "backend")},  # a change
            {"notes.txt": "hello\n"},  # elsewhere
            {"tasks/four.yaml": "{id: four, specialty: backend, title: x}\n"},
            {"tasks/five.yaml": "id: five\nspecialty: >\n  backend\ntitle: x\n"},
        ]
        for files in others:
            line = told(files)
            assert parse(line) == (main_of(repo), None), (files, line)
    finally:
        proc.kill()
        proc.wait()


def yaml_task(key: str, specialty: str) -> str:
    return f"id: {key}\ntitle: changed\nspecialty: {specialty}\n"


def test_only_what_the_watch_would_say_is_taken() -> None:
    sha = "a" * 40
    assert parse(sha) == (sha, None)
    assert parse(f"{sha} new") == (sha, ())
    assert parse(f"{sha} new x-1:backend y_2:front-end") == (sha, (("x-1", "backend"),
                                                                    ("y_2", "front-end")))
    for bad in ("", "x", sha[:-1], f"{sha} ", f"{sha} new ../x:backend", f"{sha} new x:",
                f"{sha} new X:backend", f"{sha} new x:backend;rm", f"{sha} old x:backend",
                f"{sha} new x:backend:y", f"{sha}\tnew x:b", "- new x:backend x"):  # fmt: skip
        assert parse(bad) is None, bad


@given(line=st.text(max_size=120))
def test_no_line_is_taken_for_more_than_it_says(line: str) -> None:
    said = parse(line)
    if said is not None:
        sha, arrivals = said
        assert line.startswith(sha) and (sha == "-" or len(sha) in (40, 64))
        for key, specialty in arrivals or ():
            assert f" {key}:{specialty}" in line


def test_told_arrivals_wake_a_free_agent_only_when_they_are_its_to_read() -> None:
    from cluster.state.watch import Waker

    waker = Waker(None)
    turns = {"mine": 0.0, "later": 0.2, "soon": 0.2}
    waker.judge = lambda arrivals: {k: turns[k] for k, _ in arrivals if k in turns}
    waker.moved((("theirs", "backend"),))
    assert not waker.wait(0.3)  # others are first in its line: no read
    waker.moved((("mine", "backend"), ("theirs", "backend")))
    assert waker.wait(30)
    waker.moved((("later", "backend"),))
    assert not waker.wait(0.0)  # its turn has not come yet
    assert not waker.wait(0.5, refs=False)  # a busy agent is not woken by it
    assert waker.wait(30)  # and a free one is, once its turn comes
    waker.moved((("soon", "backend"),))
    waker.claimed(("soon",))  # its owner took it first: no read at our turn
    assert not waker.wait(0.5)
    waker.moved(None)  # the state host could not say: read
    assert waker.wait(0.0)


def test_a_turn_to_claim_is_a_read_unless_the_task_is_told_claimed_first() -> None:
    """A fallback's turn for a task another agent owns wakes it to read, unless the state
    host tells the task claimed first; a read that began before that tell cannot bring the
    turn back (it had not seen the claim), one that began after can (the task was released
    or its lease ran out since)."""
    from cluster.state.watch import Waker

    waker = Waker(None)
    read_at = time.time()
    waker.turns({"taken": read_at + 0.2, "waiting": read_at + 0.2}, read_at)
    waker.claimed(("taken",))
    assert waker.wait(30) == "turn"  # the one still waiting
    waker.turns({"taken": time.time() + 0.2}, read_at)  # a read from before the tell
    assert waker.wait(0.6) is None
    assert not waker.wait(0.0)
    fresh = time.time()
    waker.turns({"taken": fresh + 0.2}, fresh)  # released since: a turn again
    assert waker.wait(0.6, refs=False) is None  # a busy agent is not woken by it
    assert waker.wait(30) == "turn"
    waker.turns({"gone": time.time() + 0.2}, time.time())
    waker.turns({}, time.time())  # the next read: it is no candidate of ours any more
    assert waker.wait(0.6) is None


def test_an_arrival_told_to_a_later_place_stays_unread_until_a_read_or_its_claim() -> None:
    """An agent later in a told task's line than the first three does not read at once, but
    the arrival is unread (its heartbeat then reads: the first three may all be busy) until a
    read begun after the telling, or the task's claim told; a read begun before it does not
    count, and it wakes nobody."""
    from cluster.state.watch import Waker

    waker = Waker(None)
    waker.judge = lambda arrivals: {k: math.inf for k, _ in arrivals}

    def unread() -> bool:
        return waker.unread()
    assert not unread()
    before = time.time()
    waker.moved((("far", "backend"),))
    assert unread()
    # Told after the moment asked about (the first three's turns not yet passed): not yet.
    assert not waker.unread(before) and waker.unread(time.time() + 1)
    assert waker.wait(0.3) is None  # no wake-up for it
    waker.turns({}, before)  # a read that began before the telling did not see it
    assert unread()
    waker.turns({}, time.time())
    assert not unread()
    waker.moved((("far-2", "backend"),))
    waker.claimed(("far-2",))  # its claim told: nothing left to read for it
    assert not unread()


def test_a_claim_ref_that_appears_is_told_once(tmp_path: Path) -> None:
    """New claims come down the stream (the next in line then need not read the task);
    renewals and results rewrite a known ref and say nothing, a claim dir made after the
    watch started is watched, and claims already there at the start are known."""
    repo = make_state(tmp_path)
    sha = main_of(repo)
    git(["update-ref", "refs/claims/before", sha], repo)
    proc = _watch(repo)
    lines = Lines(proc)
    try:
        poll(lambda: lines.got, 30, "the first line")
        git(["update-ref", "refs/claims/first", sha], repo)
        poll(lambda: "claimed first" in lines.got, 30, lambda: f"{lines.got}")
        for _ in range(3):  # renewals
            git(["update-ref", "refs/claims/first", sha], repo)
            git(["update-ref", "refs/claims/before", sha], repo)
        git(["update-ref", "refs/claims/second", sha], repo)
        poll(lambda: "claimed second" in lines.got, 30, lambda: f"{lines.got}")
        claimed = [line for line in lines.got if line.startswith("claimed")]
        assert claimed == ["claimed first", "claimed second"], lines.got
        assert all(parse_claimed(line) for line in claimed)
    finally:
        proc.kill()
        proc.wait()
    fresh = make_state(tmp_path / "fresh")
    assert not (fresh / "refs" / "claims").exists()
    proc = _watch(fresh)
    lines = Lines(proc)
    try:
        poll(lambda: lines.got, 30, "the first line")
        git(["update-ref", "refs/claims/made-later", main_of(fresh)], fresh)
        poll(lambda: "claimed made-later" in lines.got, 30, lambda: f"{lines.got}")
    finally:
        proc.kill()
        proc.wait()


def _reads(port: int) -> Callable[[], int]:
    """How many reads of the state repo the agent serving its metrics on ``port`` made, of
    every kind: a fetch, a read over the state session, a repository's ref files in place."""
    def count() -> int:
        return int(sum(value for name, value in scrape(port).items()
                       if name.startswith("claude_cluster_state_reads_total{")))
    return count


@pytest.mark.parametrize("transport", ["ssh", "file"])
def test_a_told_arrival_is_read_by_the_first_in_its_line_not_by_every_agent(
        tmp_path: Path, agents: Any, monkeypatch: Any, transport: str) -> None:
    """Four free agents; a landing of one task is told with it: its owner reads the repo and
    claims it, the next two would read at their turns unless told of the claim first, the
    fourth does not read (on code that woke every free agent for every move of main, all four
    read it). Over file:// the state host is this machine and the same watch runs here (reads
    are of the ref files, counted by the agents' metrics): on code that watched a file:// repo's
    refs itself, every agent read every move."""
    from cluster.agent.choose import rank
    from cluster.agent.loop import TOLD_PLACES

    repo = make_state(tmp_path, {"fold_delay_seconds": 3600, "heartbeat_seconds": 60})
    monkeypatch.setenv("GIT_SSH_VARIANT", "ssh")
    ids = [f"agent-{n}" for n in range(TOLD_PLACES + 1)]
    url = ssh_url(repo) if transport == "ssh" else f"file://{repo}"
    started, reads = [], {}
    for agent_id in ids:
        if transport == "ssh":
            monkeypatch.setenv("GIT_SSH_COMMAND", local_ssh(tmp_path / agent_id))
        port = free_port()
        reads[agent_id] = _reads(port)
        started.append(agents(url, agent_id, lease=300, heartbeat=60, poll_s=60,
                              extra=["--metrics-port", str(port)]))
    for agent in started:
        poll(partial(agent.saw, "watch_live"), 60, agent.tail)
        poll(partial(agent.saw, "metrics"), 60, agent.tail)
    poll(lambda: git(["for-each-ref", "refs/agents/"], repo).count("\n") == len(ids), 60,
         lambda: f"every heartbeat: {git(['for-each-ref'], repo)}")
    # A move the watch cannot tell as arrivals: every agent reads it, and so sees all four.
    before = {i: count() for i, count in reads.items()}
    commit_files(repo, {"notes.txt": "hello\n"}, tmp_path / "person")
    poll(lambda: all(count() >= before[i] + 1 for i, count in reads.items()), 60,
         lambda: f"every agent's read of the move: {before} -> "
                 f"{ {i: count() for i, count in reads.items()} }")  # fmt: skip
    in_line = sorted(ids, key=lambda agent_id: rank("told-1", agent_id))
    before = {i: count() for i, count in reads.items()}
    commit_files(repo, task_files([task_doc("told-1")]), tmp_path / "person")
    owner = next(a for a in started if a.id == in_line[0])
    poll(lambda: owner.saw("claimed", "told-1"), 30, owner.tail)
    assert reads[owner.id]() > before[owner.id]
    # Woken by the landing, it would have started its fetch before the owner's claim.
    last = in_line[TOLD_PLACES]
    assert reads[last]() == before[last], (last, started[ids.index(last)].tail())
    assert not any(a.saw("claimed", "told-1") for a in started if a is not owner)
