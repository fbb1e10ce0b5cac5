"""The command executor runs bash in the workspace and kills the whole group on timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.agent.executors.base import Budget, ExecutionRequest
from cluster.agent.executors.command import CommandExecutor
from tests.unit.test_tools import wait_until_gone


def request(tmp_path: Path, command: str, timeout: float = 30.0, **env: str) -> ExecutionRequest:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return ExecutionRequest(
        task_id="t-1",
        workspace=workspace,
        prompt=command,
        specialty="backend",
        budget=Budget(),
        timeout=timeout,
        log_path=tmp_path / "logs" / "t-1.log",
        env=env,
    )


def test_success_logs_output(tmp_path: Path) -> None:
    req = request(tmp_path, "echo hello; echo oops >&2; echo $GREETING > out.txt", GREETING="hi")
    outcome = CommandExecutor().run(req)
    assert outcome.ok and outcome.error is None and outcome.limit is None
    assert (req.workspace / "out.txt").read_text() == "hi\n"
    log = req.log_path.read_text()
    assert "hello" in log and "oops" in log and "exit 0" in log
    assert "hello" in outcome.summary


def test_failure_is_data(tmp_path: Path) -> None:
    outcome = CommandExecutor().run(request(tmp_path, "echo broken; exit 3"))
    assert not outcome.ok
    assert outcome.error == "command exited 3"
    assert outcome.limit is None
    assert "broken" in outcome.summary


def test_timeout_kills_grandchildren_even_if_they_ignore_sigterm(tmp_path: Path) -> None:
    # bash -> bash -> sleep, all ignoring SIGTERM: only the SIGKILL to the group ends them.
    script = "trap '' TERM; bash -c 'sleep 300 & echo $! > gc.pid; wait' & wait"
    req = request(tmp_path, script, timeout=1.0)
    outcome = CommandExecutor(grace=0.2).run(req)
    assert not outcome.ok
    assert outcome.limit == "timeout"
    wait_until_gone(int((req.workspace / "gc.pid").read_text()))


def test_background_leftovers_are_killed_on_exit(tmp_path: Path) -> None:
    req = request(tmp_path, "sleep 300 & echo $! > bg.pid")
    assert CommandExecutor().run(req).ok
    wait_until_gone(int((req.workspace / "bg.pid").read_text()))


def test_agent_environment_is_not_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_agent_secret")
    req = request(tmp_path, "echo token=${GITHUB_TOKEN:-none}")
    assert CommandExecutor().run(req).ok
    assert "token=none" in req.log_path.read_text()
