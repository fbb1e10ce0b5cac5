"""The claude-code executor against a stand-in `claude` script that prints the CLI's JSON."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.credentials import CredentialRejected
from cluster.agent.executors.base import Budget, ExecutionRequest, RateLimited
from cluster.agent.executors.claude_code import ClaudeCodeExecutor
from cluster.errors import ClusterError

# Records its arguments, talks on stderr like the CLI, prints $FAKE_RESULT as its stdout.
FAKE_CLAUDE = """#!/bin/sh
printf '%s\\n' "$@" > "$PWD/.claude-argv"
cat > "$PWD/.claude-stdin"
echo "${ANTHROPIC_API_KEY:-no key}" > "$PWD/.claude-key"
echo "working..." >&2
if [ -n "$FAKE_SLEEP" ]; then sleep "$FAKE_SLEEP"; fi
cat "$FAKE_RESULT"
exit "${FAKE_EXIT:-0}"
"""


def result(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 5210,
        "duration_api_ms": 4870,
        "num_turns": 4,
        "result": "Added the endpoint and its test.",
        "session_id": "0b6c2a3e-9a36-4f4c-8f55-4d3c1d2e5f60",
        "total_cost_usd": 0.0842,
        "usage": {
            "input_tokens": 120,
            "cache_creation_input_tokens": 3000,
            "cache_read_input_tokens": 9000,
            "output_tokens": 850,
            "server_tool_use": {"web_search_requests": 0},
            "service_tier": "standard",
        },
        "permission_denials": [],
        "uuid": "5e0d1f7a-1111-4222-8333-944455556666",
    }
    document.update(overrides)
    return document


def cc(**settings: Any) -> ClaudeCodeExecutor:
    """The executor without the bypass flag: these runs are unsealed, and may run as root,
    where the real CLI (and so the executor) refuses it."""
    return ClaudeCodeExecutor(**{"extra_args": (), **settings})


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(FAKE_CLAUDE)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def run(
    tmp_path: Path,
    document: object,
    budget: Budget | None = None,
    timeout: float = 30.0,
    executor: ClaudeCodeExecutor | None = None,
    **env: str,
):
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    output = tmp_path / "result.json"
    output.write_text(document if isinstance(document, str) else json.dumps(document))
    req = ExecutionRequest(
        task_id="t-7",
        workspace=workspace,
        prompt="Add a /health endpoint.",
        specialty="backend",
        budget=budget or Budget(),
        timeout=timeout,
        log_path=tmp_path / "t-7.log",
        env={"FAKE_RESULT": str(output), **env},
    )
    return (executor or cc()).run(req), req


def test_missing_cli_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="not on PATH"):
        cc()


def test_success_is_parsed(fake_cli: Path, tmp_path: Path) -> None:
    executor = cc(model="claude-sonnet-4-6")
    # The key the CLI gets is whatever the request's environment says: the broker's placeholder.
    outcome, req = run(tmp_path, result(), Budget(max_turns=5), executor=executor,
                       ANTHROPIC_API_KEY="sk-ant-cli")

    assert outcome.ok, outcome.error
    assert (outcome.turns, outcome.cost_usd) == (4, 0.0842)
    assert (outcome.input_tokens, outcome.output_tokens) == (12120, 850)
    assert outcome.summary == "Added the endpoint and its test."
    argv = (req.workspace / ".claude-argv").read_text().splitlines()
    assert argv[0] == "-p" and "Add a /health endpoint." not in argv  # the prompt is on stdin
    assert (req.workspace / ".claude-stdin").read_text() == "Add a /health endpoint."
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert argv[argv.index("--setting-sources") + 1] == "" and "--strict-mcp-config" in argv
    assert argv[argv.index("--max-turns") + 1] == "5"
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-6"
    assert (req.workspace / ".claude-key").read_text() == "sk-ant-cli\n"
    log = req.log_path.read_text()
    assert "working..." in log and '"num_turns": 4' in log


def test_the_default_model_and_the_dollar_budget_reach_the_cli(
    fake_cli: Path, tmp_path: Path
) -> None:
    outcome, req = run(tmp_path, result(), Budget(max_usd=0.25))
    assert outcome.ok, outcome.error
    argv = (req.workspace / ".claude-argv").read_text().splitlines()
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-6"  # no task or agent model
    assert argv[argv.index("--max-budget-usd") + 1] == "0.25"


def test_the_boundary_comes_after_the_task_args(fake_cli: Path, tmp_path: Path) -> None:
    executor = cc(task_flags=("--setting-sources",))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    req = ExecutionRequest(task_id="t", workspace=workspace, prompt="p", specialty="backend",
                           budget=Budget(), timeout=30.0, log_path=tmp_path / "t.log", env={},
                           args=("--setting-sources", "project"))
    argv = executor.argv(req)
    assert argv.index("project") < len(argv) - 1 - argv[::-1].index("--setting-sources")


def test_max_turns_subtype(fake_cli: Path, tmp_path: Path) -> None:
    document = result(subtype="error_max_turns", is_error=True, result=None)
    outcome, _ = run(tmp_path, document, Budget(max_turns=4))
    assert (outcome.ok, outcome.limit, outcome.turns) == (False, "max_turns", 4)


def test_over_budget_after_the_fact(fake_cli: Path, tmp_path: Path) -> None:
    outcome, _ = run(tmp_path, result(), Budget(max_usd=0.05))
    assert (outcome.ok, outcome.limit) == (False, "max_usd")
    outcome, _ = run(tmp_path, result(), Budget(max_tokens=1000))
    assert (outcome.ok, outcome.limit) == (False, "max_tokens")


def test_error_result(fake_cli: Path, tmp_path: Path) -> None:
    document = result(subtype="error_during_execution", is_error=True, result="tool crashed")
    outcome, _ = run(tmp_path, document, FAKE_EXIT="1")
    assert not outcome.ok and outcome.limit is None
    assert outcome.error is not None and "error_during_execution" in outcome.error


def test_usage_limit_raises_rate_limited(fake_cli: Path, tmp_path: Path) -> None:
    reset = int(time.time()) + 3600
    document = result(is_error=True, result=f"Claude AI usage limit reached|{reset}")
    with pytest.raises(RateLimited) as caught:
        run(tmp_path, document, FAKE_EXIT="1")
    assert 0 < caught.value.retry_after <= 3600


def test_api_429_uses_default_backoff(fake_cli: Path, tmp_path: Path) -> None:
    document = result(is_error=True, result="API Error: Request rejected (429) · go away",
                      api_error_status=429)
    with pytest.raises(RateLimited) as caught:
        run(tmp_path, document, executor=cc(default_backoff=33.0))
    assert (caught.value.retry_after, caught.value.stated) == (33.0, False)


def test_a_refused_credential_is_no_failed_attempt(fake_cli: Path, tmp_path: Path) -> None:
    """The CLI's own 401 (an unsealed run: no broker saw it) blocks the agent like the
    broker's would, instead of burning the attempt."""
    document = result(is_error=True, api_error_status=401,
                      result="Failed to authenticate. API Error: 401 invalid x-api-key")
    with pytest.raises(CredentialRejected, match="refused the credential"):
        run(tmp_path, document)


def test_an_old_cli_without_api_error_status_is_read_by_its_words(
    fake_cli: Path, tmp_path: Path
) -> None:
    document = result(is_error=True, result='API Error: 429 {"type":"error"}')
    with pytest.raises(RateLimited):
        run(tmp_path, document, executor=cc(default_backoff=33.0))


def test_words_alone_are_no_limit_for_a_cli_that_gives_the_status(
    fake_cli: Path, tmp_path: Path
) -> None:
    document = result(subtype="error_during_execution", is_error=True, api_error_status=None,
                      result="The tests mention a rate limit and an overloaded queue.")
    outcome, _ = run(tmp_path, document, FAKE_EXIT="1")
    assert not outcome.ok and outcome.error and "error_during_execution" in outcome.error


def test_a_reset_time_in_the_stream_sets_the_wait(fake_cli: Path, tmp_path: Path) -> None:
    reset = int(time.time()) + 7200
    info = {"status": "rejected", "resetsAt": reset, "rateLimitType": "five_hour"}
    stream = "\n".join(json.dumps(line) for line in [
        {"type": "system", "subtype": "init", "model": "claude-sonnet-4-6"},
        {"type": "rate_limit_event", "rate_limit_info": info},
        result(is_error=True, api_error_status=429, api_error="usage_limit_reached",
               result="You've hit your 5-hour limit · resets 11:49pm (UTC)"),
    ])
    with pytest.raises(RateLimited) as caught:
        run(tmp_path, stream, FAKE_EXIT="1")
    assert caught.value.stated and 7000 < caught.value.retry_after <= 7200


def test_garbage_output_is_a_failure(fake_cli: Path, tmp_path: Path) -> None:
    outcome, _ = run(tmp_path, "Error: something odd happened\n", FAKE_EXIT="2")
    assert not outcome.ok
    assert outcome.error == "claude exited 2 without a JSON result"


def test_timeout_kills_the_cli(fake_cli: Path, tmp_path: Path) -> None:
    outcome, _ = run(
        tmp_path, result(), timeout=0.5, executor=cc(grace=0.2), FAKE_SLEEP="300"
    )
    assert (outcome.ok, outcome.limit) == (False, "timeout")


def test_task_model_and_allowed_args_reach_the_cli(fake_cli: Path, tmp_path: Path) -> None:
    executor = cc(model="claude-sonnet-4-6", task_flags=("--append-system-prompt",))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    req = ExecutionRequest(task_id="t-8", workspace=workspace, prompt="p", specialty="backend",
                           budget=Budget(), timeout=30.0, log_path=tmp_path / "t-8.log", env={},
                           model="claude-opus-4-1",
                           args=("--append-system-prompt", "Be brief."))  # fmt: skip
    argv = executor.argv(req)
    assert argv[argv.index("--append-system-prompt") + 1] == "Be brief."
    assert argv[argv.index("--model") + 1] == "claude-opus-4-1"
    assert executor.refusal(None, req.args) is None


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--dangerously-skip-permissions",), "'--dangerously-skip-permissions' is not allowed"),
        (("--add-dir=/",), "'--add-dir' is not allowed"),
        (("stray",), "'stray' is no flag's value"),
        (("--append-system-prompt", "a", "b"), "'b' is no flag's value"),
    ],
)
def test_task_args_outside_the_operators_allowlist_are_refused(
    fake_cli: Path, args: tuple[str, ...], reason: str
) -> None:
    executor = cc(task_flags=("--append-system-prompt",))
    assert reason in (executor.refusal(None, args) or "")
    assert "(allowed: none)" in (cc().refusal(None, ("--verbose",)) or "")


def test_the_cli_runs_quiet(fake_cli: Path, tmp_path: Path) -> None:
    fake_cli.write_text(FAKE_CLAUDE.replace('cat "$FAKE_RESULT"',
                                            'env > "$PWD/.claude-env"; cat "$FAKE_RESULT"'))
    outcome, req = run(tmp_path, result())
    assert outcome.ok, outcome.error
    env = (req.workspace / ".claude-env").read_text().splitlines()
    for name in ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER",
                 "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING"):
        assert f"{name}=1" in env


def npm_install(prefix: Path, script: str) -> Path:
    """A CLI laid out as ``npm install -g --prefix PREFIX`` lays it out: bin/claude links to
    the package's own bin/claude.exe, which reads a file of its package."""
    package = prefix / "lib" / "node_modules" / "@anthropic-ai" / "claude-code"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@anthropic-ai/claude-code"}')
    (package / "version.txt").write_text("2.1.332\n")
    program = package / "bin" / "claude.exe"
    program.write_text(script)
    program.chmod(0o755)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "claude").symlink_to("../lib/node_modules/@anthropic-ai/claude-code/bin/"
                                           "claude.exe")
    return package


def test_a_cli_installed_outside_usr_is_shown_to_the_jail_by_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster.agent.build import executor_programs
    from cluster.sandbox.sandboxes import default_sandboxes

    reads_its_package = FAKE_CLAUDE.replace(
        'cat "$FAKE_RESULT"', 'cat "$(dirname "$0")/../version.txt" >&2; cat "$FAKE_RESULT"')
    package = npm_install(tmp_path / "npm", reads_its_package)
    monkeypatch.setenv("PATH", f"{tmp_path / 'npm' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    executor = cc()
    shown = executor_programs({"claude-code": executor})
    assert shown == (package,)

    workspace = tmp_path / "ws"
    workspace.mkdir()
    output = workspace / "result.json"  # the jail shows the work tree, not the rest of tmp_path
    output.write_text(json.dumps(result()))
    sandboxes = default_sandboxes(tmp_path / "agent")
    for programs, ok in (((), False), (shown, True)):
        req = ExecutionRequest(task_id="t-9", workspace=workspace, prompt="p", specialty="x",
                               budget=Budget(), timeout=30.0, log_path=tmp_path / f"{ok}.log",
                               env={"FAKE_RESULT": str(output)},
                               jail=sandboxes.showing(programs).jail("t-9", workspace))
        outcome = executor.run(req)
        assert outcome.ok is ok, outcome.error
    assert "2.1.332" in (tmp_path / "True.log").read_text()


def test_a_script_cli_brings_its_interpreter(tmp_path: Path) -> None:
    from cluster.sandbox.programs import program_paths

    node = tmp_path / "node-v22" / "bin" / "fakenode"
    node.parent.mkdir(parents=True)
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    package = npm_install(tmp_path / "npm", f"#!{node}\n")
    assert program_paths(package / "bin" / "claude.exe") == (package, tmp_path / "node-v22")
    assert program_paths(Path("/usr/bin/true")) == ()


def test_a_cli_whose_directory_holds_the_agents_files_is_refused(tmp_path: Path) -> None:
    from cluster.errors import ConfigError
    from cluster.sandbox.sandboxes import default_sandboxes

    with pytest.raises(ConfigError, match=r"would show the agent's .* install it elsewhere"):
        default_sandboxes(tmp_path / "agent").showing([tmp_path])
