"""Hostile tool calls through the claude executor and a real agent: a catastrophic regex, a
FIFO and a long command never freeze the agent, and cancel stops the executor's processes."""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.config import SandboxConfig
from cluster.agent.executors.base import Budget, ExecutionOutcome, ExecutionRequest
from cluster.agent.executors.claude import ClaudeExecutor
from cluster.demo import sample_repo
from cluster.sandbox.sandboxes import Sandboxes
from cluster.secret import Secret
from cluster.state.checker import check
from cluster.state.ids import agent_ref
from cluster.state.records import Release, Result
from tests.fakes.anthropic_api import DEFAULT_KEY, FakeAnthropic
from tests.helpers import commit_files, make_state, poll, task_doc, task_files
from tests.unit.test_tools import marked, wait_until_gone

MODEL = "claude-sonnet-4-6"


def leading(marker: str) -> list[int]:
    """Processes renamed to ``marker`` (``exec -a``), not those merely mentioning it."""
    found = []
    for pid in marked(marker):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(marker.encode()):
                found.append(pid)
        except OSError:
            pass
    return found


def heartbeat_tip(state: Path, agent_id: str) -> str:
    """The commit of the agent's heartbeat ref ("" before its first heartbeat)."""
    done = subprocess.run(
        ["git", "--git-dir", str(state), "rev-parse", "-q", "--verify", agent_ref(agent_id)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip()


def test_hostile_tools_do_not_freeze_a_real_agent(
    tmp_path: Path, agents: Any, anthropic_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, target = make_state(tmp_path, {"fold_delay_seconds": 0.2}), sample_repo(tmp_path)
    doc = task_doc("hostile", repo=str(target), prompt="Search.", executor={"kind": "claude"},
                   max_attempts=1)  # fmt: skip
    commit_files(state, task_files([doc]), tmp_path / "person")
    marker = f"ccc-{uuid.uuid4().hex}"
    evil = "a" * 64 + "!"
    anthropic_api.reply_tool_use(("run_command", {"command": f"mkfifo pipe; echo {evil} > e.txt"}))
    anthropic_api.reply_tool_use(
        ("read_file", {"path": "pipe"}),
        ("search", {"pattern": "(a+)+$", "timeout": 6}),
        ("edit_file", {"path": "pipe", "old_string": "a", "new_string": "b"}),
        ("list_files", {}),
    )
    anthropic_api.reply_tool_use(("run_command", {"command": f"exec -a {marker} sleep 1000"}))
    anthropic_api.reply_text("never asked for")
    monkeypatch.setenv("ANTHROPIC_API_KEY", DEFAULT_KEY)
    agent = agents(state, "hostile", runner="repo", lease=10, heartbeat=1, extra=[
        "--pull-request-dir", str(tmp_path / "prs"), "--executors", "claude",
        "--anthropic-base-url", anthropic_api.url, "--stop-grace", "1"])  # fmt: skip

    def asked(turns: int) -> bool:
        assert agent.proc.poll() is None, agent.tail()
        return len(anthropic_api.message_requests()) >= turns

    poll(lambda: asked(2), 120, lambda: f"the turn with the hostile calls; log:\n{agent.tail()}")
    tips = {heartbeat_tip(state, "hostile")}

    def answered() -> bool:
        tips.add(heartbeat_tip(state, "hostile"))
        return asked(3)

    poll(answered, 90, lambda: f"the tool results (is the agent frozen?); log:\n{agent.tail()}",
         interval=0.2)  # fmt: skip
    print(f"heartbeats while the tools ran: {len(tips) - 1}")
    assert len(tips) >= 3, f"the heartbeat did not advance while the tools ran: {tips}"
    read, search, edit, listing = anthropic_api.message_requests()[2]["messages"][-1]["content"]
    for result in (read, edit):
        assert result["is_error"] is True and "pipe is a FIFO" in result["content"], result
    assert search["is_error"] is True and search["content"].startswith("search timed out")
    assert listing["is_error"] is False and "e.txt" in listing["content"].splitlines()
    assert "pipe" not in listing["content"].splitlines()

    pids = poll(lambda: leading(marker), 60, "the long run_command")
    agent.signal(signal.SIGTERM)
    assert agent.wait(60) == 0, agent.tail()
    for pid in pids:
        wait_until_gone(pid)
    released = agent.saw("published", "hostile")
    assert released is not None and released["kind"] == "release", agent.tail()
    records = check(state).histories["hostile"].records.values()
    assert [(r.status, r.counted) for r in records if isinstance(r, Release)] == [
        ("paused", False)
    ]
    assert not [r for r in records if isinstance(r, Result)]
    assert anthropic_api.pending == 1  # the model was not asked again after the stop


def test_cancel_stops_the_claude_executor_and_its_process_tree(
    anthropic_api: FakeAnthropic, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    jail = Sandboxes(SandboxConfig(), tmp_path / "jails", protected=()).jail("t-7", workspace)
    marker = f"ccc-{uuid.uuid4().hex}"
    script = f"setsid bash -c 'exec -a {marker} sleep 1000' & exec -a {marker}-main sleep 1000"
    anthropic_api.reply_tool_use(("run_command", {"command": script}))
    anthropic_api.reply_text("never asked for")
    request = ExecutionRequest(
        task_id="t-7", workspace=workspace, prompt="Wait.", specialty="testing",
        budget=Budget(), timeout=600, log_path=tmp_path / "logs" / "t-7.log", env={},
        jail=jail, cancel=threading.Event(),
    )  # fmt: skip
    executor = ClaudeExecutor(Secret(anthropic_api.api_key), base_url=anthropic_api.url,
                              model=MODEL)  # fmt: skip
    box: list[ExecutionOutcome] = []
    run = threading.Thread(target=lambda: box.append(executor.run(request)), daemon=True)
    run.start()
    try:
        pids = poll(lambda: len(leading(marker)) >= 2 and leading(marker), 60,
                    "both sleeps of the command")  # fmt: skip
    finally:
        request.cancel.set()
    run.join(15)
    if run.is_alive():
        pytest.fail("the executor did not return within 15s of cancel")
    outcome = box[0]
    assert (outcome.ok, outcome.error, outcome.turns) == (False, "cancelled", 1)
    for pid in pids:
        wait_until_gone(pid)
    assert marked(marker) == []
    assert anthropic_api.pending == 1
    assert "stopped: cancelled" in request.log_path.read_text()
