"""TaskRunner end to end on real bare remotes: fix, verify, push, pull request, retries, limits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cluster.agent.executors.base import ExecutionOutcome, ExecutionRequest, RateLimited
from cluster.agent.executors.command import CommandExecutor
from cluster.agent.forge_github import GitHubForge
from cluster.agent.forge_local import LocalForge
from cluster.agent.repos import RepoPolicy
from cluster.agent.taskrunner import TaskRunner
from cluster.secret import Secret
from cluster.state.client import Held
from cluster.state.records import Claim
from cluster.state.schema import ExecutorSpec, TaskSpec
from cluster.state.snapshot import TaskView
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.helpers import git, poll
from tests.unit.test_forges import NO_THROTTLE, requests_to
from tests.unit.test_tools import marked
from tests.unit.test_workspace import BUGGY, FIX, VERIFY, make_remote, remote_sha

FIXED = BUGGY.replace("-", "+")
ZERO = "0" * 40
LOCAL_REPOS = RepoPolicy(allow_local=True)  # these tests' remotes are paths in tmp_path


def task(remote: Path | str, command: str | None = FIX, **fields: Any) -> TaskSpec:
    executor = ExecutorSpec(kind="command", command=command) if command else ExecutorSpec()
    values: dict[str, Any] = {
        "id": "fix-add", "title": "Fix add()", "specialty": "backend", "repo": str(remote),
        "executor": executor, "verify": VERIFY, "timeout": 60,
    }
    return TaskSpec(**{**values, **fields})


def held(spec: TaskSpec, attempt: int = 1) -> Held:
    claim = Claim(task=spec.id, agent="a1", host="h", pid=1, attempt=attempt, claimed_at=0.0,
                  renewed_at=0.0, expires_at=0.0, lease_seconds=60.0, task_blob=ZERO)
    return Held(spec.id, ZERO, claim, TaskView(spec.id, f"tasks/{spec.id}.yaml", ZERO, spec,
                                               None, 0.0))


def local_runner(tmp_path: Path, **executors: Any) -> TaskRunner:
    chosen = executors or {"command": CommandExecutor(grace=0.2)}
    return TaskRunner(tmp_path / "agent", LocalForge(tmp_path / "agent" / "prs"), chosen,
                      repos=LOCAL_REPOS)


@dataclass
class Scripted:
    """An executor that does what a test says and records every request it gets."""

    act: Callable[[ExecutionRequest], ExecutionOutcome]
    name: str = "claude"
    requests: list[ExecutionRequest] = field(default_factory=list)
    refuse: str | None = None

    def refusal(self, model: str | None, args: tuple[str, ...]) -> str | None:
        return self.refuse

    def run(self, request: ExecutionRequest) -> ExecutionOutcome:
        self.requests.append(request)
        return self.act(request)


def fixes(request: ExecutionRequest) -> ExecutionOutcome:
    (request.workspace / "calc.py").write_text(FIXED)
    return ExecutionOutcome(ok=True, summary="fixed add()", turns=3, input_tokens=120,
                            output_tokens=40, cost_usd=0.02)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def test_command_task_fixes_verifies_pushes_and_records_a_pr(tmp_path: Path, remote: Path) -> None:
    report = local_runner(tmp_path).run(held(task(remote)), threading.Event())
    assert (report.status, report.reason) == ("succeeded", "")
    out = report.outcome
    assert out.branch == "cluster/fix-add" and out.head == remote_sha(remote, "cluster/fix-add")
    assert git(["show", "cluster/fix-add:calc.py"], remote).strip() == FIXED.strip()
    message = git(["log", "-1", "--format=%B", "cluster/fix-add"], remote)
    assert "Task: fix-add (attempt 1)" in message
    assert out.pull_request is not None and out.pull_request.startswith("file://")
    record = json.loads(Path(urlsplit(out.pull_request).path).read_text())
    assert (record["head"], record["base"], record["title"]) == (out.head, "main", "Fix add()")
    assert out.log is not None and "calc ok" in Path(out.log).read_text()
    assert out.started_at is not None and out.finished_at is not None
    assert out.duration_s is not None and out.duration_s >= 0
    assert not (tmp_path / "agent" / "workspaces" / "fix-add-a1").exists()
    # Verify ran python (no .gitignore here): its __pycache__ was never committed.
    tree = git(["ls-tree", "-r", "--name-only", "cluster/fix-add"], remote).split()
    assert tree == ["calc.py", "test_calc.py"]


def test_verify_failure_is_failed_and_keeps_the_workspace(tmp_path: Path, remote: Path) -> None:
    spec = task(remote, "echo 'some notes' > NOTES")
    report = local_runner(tmp_path).run(held(spec), threading.Event())
    assert (report.status, report.reason) == ("failed", "verify exited with 1")
    # The unfinished work is pushed for the retry to resume from, but not proposed.
    assert remote_sha(remote, "cluster/fix-add") == report.outcome.head is not None
    assert report.outcome.pull_request is None
    assert (tmp_path / "agent" / "workspaces" / "fix-add-a1" / "tree" / "NOTES").exists()
    assert "AssertionError" in Path(str(report.outcome.log)).read_text()


def test_no_changes_is_failed(tmp_path: Path, remote: Path) -> None:
    report = local_runner(tmp_path).run(held(task(remote, "true", verify=None)), threading.Event())
    assert (report.status, report.reason) == ("failed", "executor made no changes")
    assert remote_sha(remote, "cluster/fix-add") is None


def test_retry_builds_on_the_branch_and_reuses_the_pr(tmp_path: Path, remote: Path) -> None:
    runner = local_runner(tmp_path)
    first = runner.run(held(task(remote)), threading.Event())
    second = runner.run(held(task(remote, "echo '# reviewed' >> calc.py"), 2), threading.Event())
    assert second.status == "succeeded"
    assert git(["rev-parse", f"{second.outcome.head}^"], remote).strip() == first.outcome.head
    assert second.outcome.pull_request == first.outcome.pull_request
    record = json.loads(Path(urlsplit(str(second.outcome.pull_request)).path).read_text())
    assert record["head"] == second.outcome.head and "attempt 2" in record["body"]
    # A retry with nothing to add still proposes what its predecessor pushed.
    third = runner.run(held(task(remote, "true"), 3), threading.Event())
    assert third.status == "succeeded" and third.outcome.head == second.outcome.head
    assert len(list((tmp_path / "agent" / "prs").rglob("*.json"))) == 1


def test_timeout_kills_the_command_and_its_children(tmp_path: Path, remote: Path) -> None:
    marker = f"ccc-timeout-child-{time.monotonic_ns()}"
    spec = task(remote, f"bash -c 'exec -a {marker} sleep 300' & setsid bash -c "
                        f"'exec -a {marker} sleep 300' & wait", timeout=1)
    report = local_runner(tmp_path).run(held(spec), threading.Event())
    assert report.status == "timed_out" and "timeout of 1s" in report.reason
    poll(lambda: not marked(marker), 10, f"a {marker} outlived the timed-out attempt")


def test_rate_limit_pauses_with_retry_after(tmp_path: Path, remote: Path) -> None:
    def limited(request: ExecutionRequest) -> ExecutionOutcome:
        raise RateLimited(42.0, "429 from the API")

    runner = local_runner(tmp_path, claude=Scripted(limited))
    report = runner.run(held(task(remote, None)), threading.Event())
    assert (report.status, report.retry_after) == ("paused", 42.0)
    assert "executor" in report.reason and "429" in report.reason


def test_budget_limit_is_named(tmp_path: Path, remote: Path) -> None:
    def over(request: ExecutionRequest) -> ExecutionOutcome:
        assert request.budget.max_turns == 5
        return ExecutionOutcome(ok=False, summary="ran out", turns=5, limit="max_turns")

    runner = local_runner(tmp_path, claude=Scripted(over))
    report = runner.run(held(task(remote, None, budget={"max_turns": 5})), threading.Event())
    assert (report.status, report.reason, report.outcome.turns) == (
        "failed", "max_turns exceeded", 5,
    )


def test_cancel_and_missing_executor(tmp_path: Path, remote: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    stopped = local_runner(tmp_path).run(held(task(remote)), cancel)
    assert stopped.status == "stopped" and "claim was lost" in stopped.reason
    missing = local_runner(tmp_path).run(held(task(remote, None)), threading.Event())
    assert missing.status == "invalid" and "'claude' is not available" in missing.reason


def test_the_tasks_model_and_args_reach_the_executor(tmp_path: Path, remote: Path) -> None:
    scripted = Scripted(fixes, name="claude-code")
    runner = local_runner(tmp_path, **{"claude-code": scripted})
    executor = {"kind": "claude-code", "model": "claude-opus-4-1", "args": ["--verbose"]}
    report = runner.run(held(task(remote, None, executor=executor)), threading.Event())
    assert report.status == "succeeded", report.reason
    assert [(r.model, r.args) for r in scripted.requests] == [("claude-opus-4-1", ("--verbose",))]


def test_a_refused_request_is_invalid_before_any_work(tmp_path: Path, remote: Path) -> None:
    scripted = Scripted(fixes, refuse="no price for model 'mystery'")
    runner = local_runner(tmp_path, claude=scripted)
    report = runner.run(held(task(remote, None, executor={"model": "mystery"})), threading.Event())
    assert report.status == "invalid"
    assert report.reason == "executor claude: no price for model 'mystery'"
    assert scripted.requests == [] and not (tmp_path / "agent" / "workspaces").exists()


class MirroredGitHub(GitHubForge):
    """GitHub's API from the stand-in, git from a bare repo (the stand-in serves no git)."""

    def __init__(self, mirror: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mirror = mirror

    def clone_url(self, repo: str) -> str:
        return str(self.mirror)


def test_github_task_prompt_has_the_issue_and_retry_updates_the_pr(
    tmp_path: Path, remote: Path, github_api: FakeGitHub
) -> None:
    github_api.add_repo("octo/calc")
    number = github_api.add_issue("octo/calc", "add() subtracts", "add(2, 3) gives -1")
    github_api.add_comment("octo/calc", number, "Please keep the signature.", author="alice")
    forge = MirroredGitHub(remote, token=Secret(DEFAULT_TOKEN), base_url=github_api.api_url,
                           **NO_THROTTLE)
    executor = Scripted(fixes)
    runner = TaskRunner(tmp_path / "agent", forge, {"claude": executor})
    spec = task("octo/calc", None, prompt="Fix the bug in calc.py.", issue=number)
    first = runner.run(held(spec), threading.Event())
    assert first.status == "succeeded", first.reason
    prompt = executor.requests[0].prompt
    assert prompt.startswith("Fix the bug in calc.py.")
    for part in ("add() subtracts", "add(2, 3) gives -1", "alice wrote:", "keep the signature"):
        assert part in prompt
    out = first.outcome
    assert (out.turns, out.input_tokens, out.output_tokens, out.cost_usd) == (3, 120, 40, 0.02)
    assert out.pull_request == f"{github_api.url}/octo/calc/pull/2"
    second = runner.run(held(spec, 2), threading.Event())
    assert second.status == "succeeded" and second.outcome.pull_request == out.pull_request
    assert requests_to(github_api, "POST", "/pulls") == 1
    assert requests_to(github_api, "PATCH", "/pulls/2") == 1
    pulls = github_api.pulls("octo/calc")
    assert len(pulls) == 1 and f"Closes #{number}" in pulls[0]["body"]
    assert "attempt 2" in pulls[0]["body"]


def test_secrets_reach_no_process_config_log_or_reason(
    tmp_path: Path, remote: Path, github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", DEFAULT_TOKEN)
    forge = MirroredGitHub(remote, base_url=github_api.api_url, **NO_THROTTLE)
    extra = "sk-ant-extra-secret-value"
    runner = TaskRunner(tmp_path / "agent", forge, {"command": CommandExecutor()},
                        secrets=[Secret(extra)])
    spec = task("octo/calc", f"env > seen-env.txt; echo using {extra}; {FIX}",
                verify=f"env > verify-env.txt; echo {extra}; exit 7")
    report = runner.run(held(spec), threading.Event())
    assert (report.status, report.reason) == ("failed", "verify exited with 7")
    workspace = tmp_path / "agent" / "workspaces" / "fix-add-a1"
    for name in ("tree/seen-env.txt", "tree/verify-env.txt", "git/config"):
        text = (workspace / name).read_text()
        assert DEFAULT_TOKEN not in text and "GIT_CONFIG" not in text, name
    log = Path(str(report.outcome.log)).read_text()
    assert extra not in log and "using ***" in log and DEFAULT_TOKEN not in log
    assert extra not in report.outcome.summary


def test_cancel_during_verify_stops_it(tmp_path: Path, remote: Path) -> None:
    cancel = threading.Event()
    started = tmp_path / "agent" / "workspaces" / "fix-add-a1" / "tree" / "verify-started"
    spec = task(remote, verify="touch verify-started; sleep 300")  # in the jail: its tree

    def cancel_once_verify_runs() -> None:
        poll(started.exists, 30, "verify to start", interval=0.02)
        cancel.set()

    watcher = threading.Thread(target=cancel_once_verify_runs)
    watcher.start()
    report = local_runner(tmp_path).run(held(spec), cancel)
    watcher.join()
    assert report.status == "stopped" and report.reason.startswith("verify stopped")
    assert remote_sha(remote, "cluster/fix-add") is None


def test_command_sees_the_prompt_file(tmp_path: Path, remote: Path) -> None:
    spec = task(remote, 'cp "$CLUSTER_PROMPT_FILE" PROMPT.md', verify=None,
                prompt="Write down what you were asked.")
    report = local_runner(tmp_path).run(held(spec), threading.Event())
    assert report.status == "succeeded", report.reason
    prompt = git(["show", "cluster/fix-add:PROMPT.md"], remote)
    assert prompt.strip() == "Write down what you were asked."
