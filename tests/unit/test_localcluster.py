"""A local cluster that keeps running: up, work, idempotent up, down."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cluster.localcluster import agents, down, up
from cluster.state.checker import check
from tests.clients import state_client
from tests.helpers import commit_files, git, poll, task_doc, task_files


def target_repo(tmp_path: Path) -> Path:
    src, bare = tmp_path / "src", tmp_path / "target.git"
    src.mkdir()
    git(["init", "-q", "-b", "main"], src)
    (src / "README.md").write_text("target\n")
    git(["add", "."], src)
    git(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "i"], src)
    git(["clone", "-q", "--bare", str(src), str(bare)], tmp_path)
    return bare


def test_up_runs_agents_until_down(tmp_path: Path) -> None:
    root = tmp_path / "local"
    try:
        started = up(root, 2, "backend")
        assert [a.name for a in started if a.running] == ["local-1", "local-2"]
        pids = {a.name: a.pid for a in started}
        again = up(root, 2, "backend")  # already running: nothing new is started
        assert {a.name: a.pid for a in again} == pids
        doc = task_doc("hello", command="echo hello > HELLO", repo=str(target_repo(tmp_path)))
        commit_files(root / "state.git", task_files([doc]), tmp_path / "person")
        poll(lambda: check(root / "state.git").tasks.get("hello", ("", ""))[0] == "done", 60,
             lambda: f"the task to finish; log: {(root / 'logs' / 'local-1.log').read_text()}")
        assert "hello" in git(["show", "cluster/hello:HELLO"], tmp_path / "target.git")
        # `invoke up` seals task code by default: every agent says so, no attempt ran unsealed
        # (Polled: an agent that has not won a task yet may publish its first heartbeat late
        # on a loaded machine.)
        def sandboxes() -> dict[str, str] | None:
            with state_client(root / "state.git", tmp_path) as reader:
                seen = {n: str(b.sandbox) for n, b in reader.snapshot().agents.items()}
            return seen if len(seen) == 2 else None

        said = poll(sandboxes, 60, "both agents' heartbeats")
        assert said == {"local-1": "bwrap", "local-2": "bwrap"}
        logs = "".join(p.read_text() for p in (root / "logs").rglob("*.log"))
        assert "hello" in logs and "[unsealed]" not in logs
    finally:
        stopped = down(root)
    assert sorted(stopped) == ["local-1", "local-2"]
    assert agents(root) == []


def test_a_pid_file_naming_a_stranger_never_gets_it_a_signal(tmp_path: Path) -> None:
    # the agent died and the kernel gave its pid to another process: down must leave that alone
    root = tmp_path / "local"
    (root / "run").mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        (root / "run" / "local-1.pid").write_text(f"{stranger.pid}\n")
        assert [(a.name, a.pid, a.running) for a in agents(root)] == [
            ("local-1", stranger.pid, False)]
        assert down(root) == []
        assert stranger.poll() is None, "the stranger was signalled"
        assert agents(root) == []  # the stale pid file is forgotten
    finally:
        stranger.kill()
        stranger.wait()
