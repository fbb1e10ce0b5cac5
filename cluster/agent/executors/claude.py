"""The `claude` executor: a Messages API tool-use loop, confined to the workspace, under budgets.

The SDK is imported on the first task, not at start-up: ``import anthropic`` loads some 3,000
modules (about a second of CPU and 60 MB per agent), which an agent that never runs a `claude`
task, or has not yet, should not pay before its first heartbeat.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cluster.agent.credentials import CredentialRejected
from cluster.agent.executors.base import (
    DEFAULT_MODEL,
    Budget,
    ExecutionOutcome,
    ExecutionRequest,
    LimitName,
    RateLimited,
)
from cluster.agent.pricing import DEFAULT_PRICES, Price, price_for
from cluster.agent.ratelimit import retry_wait
from cluster.agent.tools import TOOL_SCHEMAS, Toolbox
from cluster.errors import ConfigError, SecretMissing
from cluster.secret import Secret, mask

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import MessageParam, ToolParam, ToolResultBlockParam

__all__ = ["DEFAULT_MODEL", "ClaudeExecutor"]

DEFAULT_BACKOFF = 60.0
CONTINUE_PROMPT = "Your reply was cut off at the output limit. Continue where you stopped."


BASE_PROMPT = (
    "You are a coding agent working alone, without a human to ask, in a git checkout that is "
    "your workspace. Use the tools to read, change and test the code; paths are relative to the "
    "workspace and you cannot leave it. Do not commit or push: the agent running you does that. "
    "Make the smallest change that completes the task, run the relevant tests, and end with a "
    "short summary of what you changed and how you checked it."
)
SPECIALTY_PROMPTS: Mapping[str, str] = {
    "backend": "You specialise in server-side code: APIs, data models, storage and performance.",
    "frontend": "You specialise in user interfaces: components, styling, accessibility.",
    "testing": "You specialise in tests: reproduce bugs as failing tests first, keep tests fast "
    "and deterministic, never weaken an assertion to make it pass.",
    "devops": "You specialise in build, CI, packaging and deployment: scripts, units, containers.",
}

# The API's spend-limit error: "... You will regain access on 2025-07-01 at 00:00 UTC."
_USAGE_LIMIT = re.compile(r"usage limit", re.IGNORECASE)


@dataclass
class _Tally:
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    last_text: str = ""

    def outcome(
        self, ok: bool, error: str | None = None, limit: LimitName | None = None
    ) -> ExecutionOutcome:
        return ExecutionOutcome(
            ok=ok,
            summary=self.last_text,
            turns=self.turns,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            error=error,
            limit=limit,
        )

    def exhausted(self, budget: Budget) -> LimitName | None:
        """The first budget that leaves no room for another turn."""
        if budget.max_turns is not None and self.turns >= budget.max_turns:
            return "max_turns"
        if (
            budget.max_tokens is not None
            and self.input_tokens + self.output_tokens >= budget.max_tokens
        ):
            return "max_tokens"
        if budget.max_usd is not None and self.cost_usd >= budget.max_usd:
            return "max_usd"
        return None


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    input: object


@dataclass
class _Reply:
    stop_reason: str
    content: list[dict[str, Any]] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)
    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


class _Malformed(Exception):
    """The API answered with something that is not a usable message."""


class ClaudeExecutor:
    """Drives Claude through the Messages API with the workspace tools until it ends its turn."""

    name = "claude"

    def __init__(
        self,
        api_key: Secret | None,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        prices: Mapping[str, Price] = DEFAULT_PRICES,
        prompts: Mapping[str, str] | None = None,
        max_output_tokens: int = 8192,
        command_timeout: float = 300.0,
        default_backoff: float = DEFAULT_BACKOFF,
        key_source: str = "ANTHROPIC_API_KEY in the agent's secrets file",
    ) -> None:
        if api_key is None or not api_key:
            raise SecretMissing(f"the claude executor needs an Anthropic API key ({key_source})")
        self._key = api_key
        self._model = model
        self._prices = prices
        price_for(model, prices)  # an agent whose own model has no price does not start
        self._prompts = {**SPECIALTY_PROMPTS, **(prompts or {})}
        self._max_output_tokens = max_output_tokens
        self._command_timeout = command_timeout
        self._default_backoff = default_backoff
        self._base_url = base_url
        self._client_: anthropic.Anthropic | None = None

    @property
    def _client(self) -> anthropic.Anthropic:
        if self._client_ is None:
            import anthropic

            # Retries are the agent's business: a rate limit pauses claiming, not a sleep here.
            self._client_ = anthropic.Anthropic(
                api_key=self._key.reveal(), base_url=self._base_url, max_retries=0
            )
        return self._client_

    def system_prompt(self, specialty: str) -> str:
        extra = self._prompts.get(specialty, f"Your specialty is {specialty}.")
        return f"{BASE_PROMPT}\n\n{extra}"

    def refusal(self, model: str | None, args: tuple[str, ...]) -> str | None:
        if args:
            return "the claude executor takes no args (they are for claude-code)"
        try:
            price_for(model or self._model, self._prices)
        except ConfigError as exc:
            return str(exc)  # budgets in USD need the model's price
        return None

    def run(self, request: ExecutionRequest) -> ExecutionOutcome:
        import anthropic

        problem = self.refusal(request.model, request.args)
        if problem is not None:
            return ExecutionOutcome(ok=False, summary="", error=problem)
        model = request.model or self._model
        price = price_for(model, self._prices)
        deadline = time.monotonic() + request.timeout
        toolbox = Toolbox(request.workspace, env=request.env, jail=request.jail,
                          cancel=request.cancel, command_timeout=self._command_timeout)
        messages: list[MessageParam] = [{"role": "user", "content": request.prompt}]
        tally = _Tally()
        log = _TurnLog(request.log_path, self._key)
        log.line(f"task {request.task_id}: model {model}, budget {request.budget}")
        while True:
            if request.cancel.is_set():  # between turns and after tool calls
                log.line("stopped: cancelled")
                return tally.outcome(False, "cancelled")
            limit = tally.exhausted(request.budget)
            if limit is None and time.monotonic() >= deadline:
                limit = "timeout"
            if limit is not None:
                log.line(f"stopped: {limit} reached")
                return tally.outcome(False, f"budget exhausted: {limit}", limit)
            try:
                reply = self._turn(request, model, price, messages, tally, deadline)
            except _Malformed as exc:
                log.line(f"error: {exc}")
                return tally.outcome(False, log.masked(str(exc)))
            except anthropic.APITimeoutError:
                if time.monotonic() < deadline:
                    return tally.outcome(False, "API request timed out")
                return tally.outcome(False, f"timed out after {request.timeout:g}s", "timeout")
            except anthropic.APIStatusError as exc:
                self._raise_if_rate_limited(exc, log)
                if exc.status_code == 401:  # the key itself: not this task's fault
                    log.line(f"credential refused: {_api_message(exc)}")
                    raise CredentialRejected(log.masked(
                        f"the model API refused the API key (401 {exc.type or ''}): "
                        f"{_api_message(exc)}")) from exc
                error = f"API error {exc.status_code} {exc.type or ''}: {_api_message(exc)}"
                log.line(error)
                return tally.outcome(False, log.masked(error))
            except anthropic.APIError as exc:
                log.line(f"error: {exc}")
                return tally.outcome(False, log.masked(f"API failure: {exc}"))
            log.line(
                f"turn {tally.turns}: in={reply.input_tokens} out={reply.output_tokens} "
                f"total={tally.input_tokens + tally.output_tokens} usd={tally.cost_usd:.6f} "
                f"stop={reply.stop_reason} tools={','.join(c.name for c in reply.calls) or '-'}"
            )
            messages.append({"role": "assistant", "content": cast(Any, reply.content)})
            if reply.calls:
                if tally.exhausted(request.budget) is not None:
                    continue  # reported at the loop head; skip tools we cannot follow up
                results = _run_tools(toolbox, reply.calls, deadline, request.cancel)
                messages.append({"role": "user", "content": results})
            elif reply.stop_reason == "max_tokens":
                messages.append({"role": "user", "content": CONTINUE_PROMPT})
            elif reply.stop_reason in ("end_turn", "stop_sequence"):
                log.line("done")
                return tally.outcome(True)
            else:
                log.line(f"stopped: {reply.stop_reason}")
                return tally.outcome(False, f"model stopped with {reply.stop_reason}")

    def _turn(
        self,
        request: ExecutionRequest,
        model: str,
        price: Price,
        messages: list[MessageParam],
        tally: _Tally,
        deadline: float,
    ) -> _Reply:
        """One API call; its usage is counted in ``tally`` before anything can go wrong later."""
        max_tokens = self._max_output_tokens
        if request.budget.max_tokens is not None:
            left = request.budget.max_tokens - tally.input_tokens - tally.output_tokens
            max_tokens = max(1, min(max_tokens, left))
        try:
            message = self._client.messages.create(
                model=model,
                max_tokens=max_tokens,
                system=self.system_prompt(request.specialty),
                tools=cast("list[ToolParam]", TOOL_SCHEMAS),
                messages=messages,
                timeout=max(deadline - time.monotonic(), 0.001),
            )
        except ValueError as exc:  # the SDK decodes the body as JSON and lets this through
            raise _Malformed(f"malformed API response: {exc}") from exc
        tally.turns += 1
        reply = _parse(message)
        tally.input_tokens += reply.input_tokens
        tally.output_tokens += reply.output_tokens
        tally.cost_usd += price.cost(reply.input_tokens, reply.output_tokens)
        tally.last_text = reply.text or tally.last_text
        return reply

    def _raise_if_rate_limited(self, exc: anthropic.APIStatusError, log: _TurnLog) -> None:
        message = _api_message(exc)
        if exc.status_code not in (429, 529) and not _USAGE_LIMIT.search(message):
            return
        wait = retry_wait(exc.response.headers, message)
        wait = self._default_backoff if wait is None else wait
        log.line(f"rate limited ({exc.status_code}): retry after {wait:.0f}s")
        raise RateLimited(wait, f"{exc.status_code} {exc.type or ''}: {message}") from exc


def _run_tools(
    toolbox: Toolbox, calls: list[_Call], deadline: float, cancel: threading.Event
) -> list[ToolResultBlockParam]:
    results: list[ToolResultBlockParam] = []
    for call in calls:
        if cancel.is_set():
            break  # the loop head returns "cancelled"; these results are never sent
        result = toolbox.call(call.name, call.input, deadline=deadline)
        results.append(
            {
                "type": "tool_result",
                "tool_use_id": call.id,
                "content": result.content,
                "is_error": result.is_error,
            }
        )
    return results


def _parse(message: object) -> _Reply:
    """Check the parts of a message the loop relies on; the SDK does not validate responses."""
    try:
        usage = getattr(message, "usage")  # noqa: B009 - absent on a malformed body
        reply = _Reply(
            stop_reason=str(getattr(message, "stop_reason")),  # noqa: B009
            input_tokens=sum(
                int(getattr(usage, name, 0) or 0)
                for name in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            ),
            output_tokens=int(usage.output_tokens),
        )
        blocks = getattr(message, "content")  # noqa: B009
        if not isinstance(blocks, list):
            raise TypeError("content is not a list")
        texts: list[str] = []
        for block in blocks:
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(str(block.text))
                reply.content.append({"type": "text", "text": str(block.text)})
            elif kind == "tool_use":
                call = _Call(str(block.id), str(block.name), block.input)
                reply.calls.append(call)
                reply.content.append(
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}
                )
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Malformed(f"malformed API response: {exc}") from exc
    reply.text = "\n".join(texts).strip()
    return reply


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(body) if body else exc.message


class _TurnLog:
    """Appends one line per event to the task's log; the API key is masked out of every line."""

    def __init__(self, path: Path, key: Secret) -> None:
        self._path = path
        self._key = key
        path.parent.mkdir(parents=True, exist_ok=True)

    def masked(self, text: str) -> str:
        return mask(text, [self._key])

    def line(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._path.open("a", encoding="utf-8") as log:
            log.write(f"{stamp} [claude] {self.masked(text)}\n")
