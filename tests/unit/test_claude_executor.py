"""The claude executor's tool-use loop against the fake Messages API, through the real SDK."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster.agent.credentials import CredentialRejected
from cluster.agent.executors.base import Budget, ExecutionRequest, RateLimited
from cluster.agent.executors.claude import ClaudeExecutor
from cluster.agent.pricing import DEFAULT_PRICES, Price, price_for
from cluster.errors import ConfigError, SecretMissing
from cluster.secret import Secret
from tests.fakes.anthropic_api import FakeAnthropic

MODEL = "claude-sonnet-4-6"


def executor(api: FakeAnthropic, **kwargs) -> ClaudeExecutor:
    return ClaudeExecutor(Secret(api.api_key), base_url=api.url, model=MODEL, **kwargs)


def request(
    tmp_path: Path, budget: Budget | None = None, timeout: float = 60.0
) -> ExecutionRequest:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return ExecutionRequest(
        task_id="t-42",
        workspace=workspace,
        prompt="Create hello.txt saying hi.",
        specialty="testing",
        budget=budget or Budget(),
        timeout=timeout,
        log_path=tmp_path / "logs" / "t-42.log",
        env={},
    )


def test_scripted_conversation_writes_a_file(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    anthropic_api.reply_tool_use(
        ("write_file", {"path": "hello.txt", "content": "hi\n"}), input_tokens=100, output_tokens=20
    )
    anthropic_api.reply_text("Wrote hello.txt.", input_tokens=150, output_tokens=10)
    req = request(tmp_path)

    outcome = executor(anthropic_api).run(req)

    assert outcome.ok, outcome.error
    assert (req.workspace / "hello.txt").read_text() == "hi\n"
    assert (outcome.turns, outcome.input_tokens, outcome.output_tokens) == (2, 250, 30)
    assert outcome.cost_usd == pytest.approx(Price(3.0, 15.0).cost(250, 30))
    assert outcome.summary == "Wrote hello.txt."
    first, second = anthropic_api.message_requests()
    assert first["model"] == MODEL
    assert "tests" in first["system"]  # the testing specialty's prompt
    assert {t["name"] for t in first["tools"]} >= {"write_file", "run_command"}
    result = second["messages"][2]["content"][0]
    assert result == {
        "type": "tool_result",
        "tool_use_id": "toolu_fake_1",
        "content": "wrote 3 bytes to hello.txt",
        "is_error": False,
    }
    headers = anthropic_api.requests[0].headers
    assert headers["authorization"] == f"Bearer {anthropic_api.api_key}"
    log = req.log_path.read_text()
    assert "turn 1: in=100 out=20" in log and "tools=write_file" in log
    assert anthropic_api.api_key not in log


def test_tool_errors_go_back_to_the_model(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    anthropic_api.reply_tool_use(("read_file", {"path": "../../etc/passwd"}))
    anthropic_api.reply_text("I cannot read that.")
    assert executor(anthropic_api).run(request(tmp_path)).ok
    result = anthropic_api.message_requests()[1]["messages"][2]["content"][0]
    assert result["is_error"] is True
    assert "outside the workspace" in result["content"]


def test_max_turns(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    for _ in range(3):
        anthropic_api.reply_tool_use(("list_files", {}))
    outcome = executor(anthropic_api).run(request(tmp_path, Budget(max_turns=2)))
    assert (outcome.ok, outcome.limit, outcome.turns) == (False, "max_turns", 2)
    assert anthropic_api.pending == 1


def test_max_tokens(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    anthropic_api.reply_tool_use(("list_files", {}), input_tokens=80, output_tokens=30)
    anthropic_api.reply_text("never asked for")
    outcome = executor(anthropic_api).run(request(tmp_path, Budget(max_tokens=100)))
    assert (outcome.ok, outcome.limit, outcome.turns) == (False, "max_tokens", 1)
    assert (outcome.input_tokens, outcome.output_tokens) == (80, 30)
    assert anthropic_api.message_requests()[0]["max_tokens"] == 100  # capped to what is left


def test_max_usd(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    anthropic_api.reply_tool_use(("list_files", {}), input_tokens=3, output_tokens=3)
    anthropic_api.reply_text("never asked for")
    expensive = {MODEL: Price(1_000_000.0, 1_000_000.0)}  # one dollar a token
    outcome = executor(anthropic_api, prices=expensive).run(request(tmp_path, Budget(max_usd=5.0)))
    assert (outcome.ok, outcome.limit, outcome.cost_usd) == (False, "max_usd", 6.0)


def test_wall_clock_deadline(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    anthropic_api.reply_tool_use(("run_command", {"command": "sleep 300"}))
    anthropic_api.reply_text("never asked for")
    outcome = executor(anthropic_api).run(request(tmp_path, timeout=2.0))
    assert (outcome.ok, outcome.limit) == (False, "timeout")
    assert anthropic_api.pending == 1


def test_truncated_reply_is_continued(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    anthropic_api.reply_text("Part one", stop_reason="max_tokens")
    anthropic_api.reply_text("Part two")
    outcome = executor(anthropic_api).run(request(tmp_path))
    assert outcome.ok and outcome.turns == 2
    assert anthropic_api.message_requests()[1]["messages"][-1]["role"] == "user"


def test_429_raises_rate_limited_with_retry_after(
    anthropic_api: FakeAnthropic, tmp_path: Path
) -> None:
    anthropic_api.rate_limited(retry_after="17")
    with pytest.raises(RateLimited) as caught:
        executor(anthropic_api).run(request(tmp_path))
    assert caught.value.retry_after == 17.0


def test_429_waits_for_the_exhausted_limits_reset(
    anthropic_api: FakeAnthropic, tmp_path: Path
) -> None:
    """No retry-after, only the ratelimit headers: the wait is the spent limit's reset (7 s), not
    the default backoff (60 s) nor the later reset of a limit that has requests left."""
    now = datetime.now(UTC)
    anthropic_api.reply_error(
        429,
        "rate_limit_error",
        "This request would exceed your organization's rate limit of 30,000 input tokens.",
        {
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": (now + timedelta(seconds=50)).isoformat(),
            "anthropic-ratelimit-input-tokens-remaining": "0",
            "anthropic-ratelimit-input-tokens-reset": (now + timedelta(seconds=7)).isoformat(),
        },
    )
    with pytest.raises(RateLimited) as caught:
        executor(anthropic_api, default_backoff=60.0).run(request(tmp_path))
    assert 0.0 < caught.value.retry_after <= 7.0

def test_529_raises_rate_limited_with_default_backoff(
    anthropic_api: FakeAnthropic, tmp_path: Path
) -> None:
    anthropic_api.overloaded()
    with pytest.raises(RateLimited) as caught:
        executor(anthropic_api, default_backoff=42.0).run(request(tmp_path))
    assert caught.value.retry_after == 42.0


def test_usage_limit_waits_until_access_returns(
    anthropic_api: FakeAnthropic, tmp_path: Path
) -> None:
    anthropic_api.reply_error(
        400,
        "invalid_request_error",
        "You have reached your specified API usage limits. "
        "You will regain access on 2099-01-01 at 00:00 UTC.",
    )
    with pytest.raises(RateLimited) as caught:
        executor(anthropic_api).run(request(tmp_path))
    assert caught.value.retry_after > 365 * 86400


@pytest.mark.parametrize(
    "body", [b'{"id": "msg_01", "type": "mess', b'{"type": "message"}', b'"just a string"']
)
def test_malformed_response_is_a_failure(
    anthropic_api: FakeAnthropic, tmp_path: Path, body: bytes
) -> None:
    anthropic_api.malformed(body)
    outcome = executor(anthropic_api).run(request(tmp_path))
    assert not outcome.ok
    assert outcome.error is not None and "malformed" in outcome.error


def test_bad_key_is_a_clear_failure(anthropic_api: FakeAnthropic, tmp_path: Path) -> None:
    bad = ClaudeExecutor(Secret("sk-ant-wrong-key"), base_url=anthropic_api.url, model=MODEL)
    # Not the task's failure: the agent releases the attempt uncounted and stops claiming.
    with pytest.raises(CredentialRejected, match="401") as caught:
        bad.run(request(tmp_path))
    assert "sk-ant-wrong-key" not in str(caught.value)
    assert "sk-ant-wrong-key" not in request(tmp_path).log_path.read_text()


@pytest.mark.parametrize("key", [None, Secret("")])
def test_missing_key_fails_at_start_up(key: Secret | None) -> None:
    with pytest.raises(SecretMissing, match="API key"):
        ClaudeExecutor(key)


def test_unknown_model_price_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="no price"):
        ClaudeExecutor(Secret("sk-ant-x"), model="mystery-model")


def test_dated_model_ids_use_the_family_price(anthropic_api: FakeAnthropic) -> None:
    ClaudeExecutor(
        Secret("sk-ant-x"), base_url=anthropic_api.url, model="claude-haiku-4-5-20251001"
    )


def test_custom_specialty_prompt(anthropic_api: FakeAnthropic) -> None:
    ex = executor(anthropic_api, prompts={"docs": "You write documentation."})
    assert ex.system_prompt("docs").endswith("You write documentation.")
    assert "backend" not in ex.system_prompt("docs")


def test_the_tasks_model_is_asked_for_and_priced(
    anthropic_api: FakeAnthropic, tmp_path: Path
) -> None:
    anthropic_api.reply_text("Done.", input_tokens=1000, output_tokens=100)
    req = replace(request(tmp_path), model="claude-haiku-4-5-20251001")
    outcome = executor(anthropic_api).run(req)
    assert outcome.ok, outcome.error
    (sent,) = anthropic_api.message_requests()
    assert sent["model"] == "claude-haiku-4-5-20251001"
    haiku = price_for("claude-haiku-4-5", DEFAULT_PRICES)
    assert outcome.cost_usd == pytest.approx(haiku.cost(1000, 100))


def test_a_model_without_a_price_or_args_are_refused(anthropic_api: FakeAnthropic) -> None:
    claude = executor(anthropic_api)
    assert claude.refusal(None, ()) is None
    assert claude.refusal("claude-opus-4-1", ()) is None
    assert "no price for model 'mystery-model'" in (claude.refusal("mystery-model", ()) or "")
    assert "takes no args" in (claude.refusal(None, ("--verbose",)) or "")
