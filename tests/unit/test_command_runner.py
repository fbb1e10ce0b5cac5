"""The scratch runner: command tasks in an empty directory, with their own environment only."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cluster.agent.runner import CommandRunner
from tests.unit.test_taskrunner import held, task

SECRET = "sk-ant-agent-own-0123456789"


def test_a_task_sees_its_own_environment_never_the_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)  # as systemd's EnvironmentFile= gives it
    command = 'echo "key=${ANTHROPIC_API_KEY:-unset} task=$CLUSTER_TASK_ID home=$HOME"'
    report = CommandRunner(tmp_path).run(held(task("unused", command, verify="true")),
                                         threading.Event())  # fmt: skip
    assert report.status == "succeeded", report.reason
    log = Path(report.outcome.log or "").read_text()
    assert "key=unset task=fix-add home=" in log
    assert SECRET not in log


def test_failures_timeouts_and_cancels_are_told_apart(tmp_path: Path) -> None:
    runner = CommandRunner(tmp_path)
    failed = runner.run(held(task("unused", "true", verify="exit 3")), threading.Event())
    assert (failed.status, failed.reason) == ("failed", "verify exited with 3")
    slow = runner.run(held(task("unused", "sleep 30", timeout=1)), threading.Event())
    assert (slow.status, slow.reason) == ("timed_out", "executor exceeded the task timeout of 1s")
    cancel = threading.Event()
    cancel.set()
    stopped = runner.run(held(task("unused", "sleep 30")), cancel)
    assert stopped.status == "stopped" and "claim was lost" in stopped.reason
