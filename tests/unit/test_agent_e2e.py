"""Agents turning tasks into pull requests, end to end: real agent processes, real git
remotes, the Messages API stand-in through the real anthropic SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cluster.demo import sample_repo
from cluster.state.checker import check
from cluster.state.records import Release
from tests.clients import result_of
from tests.fakes.anthropic_api import DEFAULT_KEY, FakeAnthropic
from tests.helpers import ROOT, commit_files, git, make_state, task_doc, task_files


def fix_task(task_id: str, repo: Path, **extra: Any) -> dict[str, Any]:
    return task_doc(task_id, command="sed -i 's/a - b/a + b/' calc.py", repo=str(repo),
                    verify="python3 test_calc.py", **extra)


def repo_agent(agents: Any, state: Path, tmp_path: Path, name: str, *extra: str,
               **kwargs: Any) -> Any:
    args = ["--pull-request-dir", str(tmp_path / "prs"), *extra]
    return agents(state, name, runner="repo", exit_when_idle=True, lease=10, heartbeat=1,
                  extra=args, **kwargs)


def test_command_task_fixes_a_failing_test_and_opens_a_pull_request(
        tmp_path: Path, agents: Any) -> None:
    state, target = make_state(tmp_path, {"fold_delay_seconds": 0.2}), sample_repo(tmp_path)
    commit_files(state, task_files([fix_task("fix-add", target)]), tmp_path / "person")
    agent = repo_agent(agents, state, tmp_path, "worker")
    assert agent.wait(120) == 0, agent.tail()
    result = result_of(state, tmp_path, "fix-add")
    assert result.status == "succeeded", result.reason
    assert result.branch == "cluster/fix-add"
    pushed = git(["rev-parse", "refs/heads/cluster/fix-add"], target).strip()
    assert result.head == pushed
    assert "a + b" in git(["show", f"{pushed}:calc.py"], target)
    assert result.pull_request and result.pull_request.startswith("file://")
    record = json.loads(Path(urlparse(result.pull_request).path).read_text())
    assert record["base"] == "main" and record["head"] == pushed
    assert result.duration_s is not None and result.log and Path(result.log).exists()


def test_retry_reuses_the_branch_and_the_pull_request(tmp_path: Path, agents: Any) -> None:
    state, target = make_state(tmp_path, {"fold_delay_seconds": 0.2,
                                          "retry_backoff_seconds": 0.1}), sample_repo(tmp_path)
    # Attempt 1 commits a half fix that fails verify; attempt 2 finishes it on the same branch.
    command = ("if grep -q HALF calc.py; then sed -i 's/a - b/a + b/' calc.py; "
               "else echo '# HALF' >> calc.py; fi")
    doc = task_doc("two-steps", command=command, repo=str(target),
                   verify="python3 test_calc.py", max_attempts=2)
    commit_files(state, task_files([doc]), tmp_path / "person")
    agent = repo_agent(agents, state, tmp_path, "worker")
    assert agent.wait(120) == 0, agent.tail()
    history = check(state).histories["two-steps"]
    releases = [r for r in history.records.values() if isinstance(r, Release)]
    result = result_of(state, tmp_path, "two-steps")
    assert result.status == "succeeded" and result.attempt == 2
    assert len(releases) == 1 and releases[0].branch == result.branch == "cluster/two-steps"
    assert releases[0].pull_request is None  # unfinished work is pushed, not proposed
    parent = git(["rev-parse", f"{result.head}^"], target).strip()
    assert parent == releases[0].head  # attempt 2 built on attempt 1's pushed work
    log = git(["log", "--format=%s%n%b", "cluster/two-steps"], target)
    assert "Task: two-steps (attempt 1)" in log and "Task: two-steps (attempt 2)" in log
    assert len(list((tmp_path / "prs").rglob("*.json"))) == 1


def test_claude_task_through_the_messages_api(tmp_path: Path, agents: Any,
                                             anthropic_api: FakeAnthropic) -> None:
    state, target = make_state(tmp_path, {"fold_delay_seconds": 0.2,
                                          "retry_backoff_seconds": 0.1}), sample_repo(tmp_path)
    doc = task_doc("claude-fix", repo=str(target), verify="python3 test_calc.py",
                   prompt="Make test_calc.py pass.", executor={"kind": "claude"})
    commit_files(state, task_files([doc]), tmp_path / "person")
    anthropic_api.rate_limited(retry_after="1")  # pauses claiming; the attempt is not burnt
    anthropic_api.reply_tool_use(
        ("edit_file", {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"}),
        input_tokens=1200, output_tokens=80)
    anthropic_api.reply_text("Fixed add().", input_tokens=1400, output_tokens=20)
    os.environ["ANTHROPIC_API_KEY"] = DEFAULT_KEY
    try:
        agent = repo_agent(agents, state, tmp_path, "claude-worker", "--executors", "claude",
                           "--anthropic-base-url", anthropic_api.url)
    finally:
        del os.environ["ANTHROPIC_API_KEY"]
    assert agent.wait(120) == 0, agent.tail()
    result = result_of(state, tmp_path, "claude-fix")
    assert result.status == "succeeded", result.reason
    assert result.attempt == 1  # the 429 did not count
    assert (result.turns, result.input_tokens, result.output_tokens) == (2, 2600, 100)
    assert result.cost_usd > 0
    assert agent.saw("paused", "claude-fix") is not None
    history = check(state).histories["claude-fix"]
    paused = [r for r in history.records.values() if isinstance(r, Release)]
    assert [(r.status, r.counted) for r in paused] == [("paused", False)]
    assert DEFAULT_KEY not in agent.tail() and DEFAULT_KEY not in Path(result.log or "").read_text()


def test_missing_api_key_is_a_start_up_error(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state), "--id", "a",
         "--specialty", "backend", "--executors", "claude", "--workdir", str(tmp_path / "w")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False)
    assert done.returncode == 2
    assert "ANTHROPIC_API_KEY is not set" in done.stderr and "Traceback" not in done.stderr
