"""The `claude-code` executor: the `claude -p --output-format json` CLI in the workspace."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from cluster.agent.executors.base import ExecutionOutcome, ExecutionRequest, LimitName, RateLimited
from cluster.agent.process import GRACE_SECONDS, child_env, run_in_group
from cluster.errors import ClusterError

DEFAULT_BACKOFF = 60.0
# Headless runs cannot answer permission prompts: the attempt's jail is what bounds the CLI.
DEFAULT_ARGS = ("--permission-mode", "bypassPermissions")
# The CLI calls nothing but the model API: no update checks, telemetry or error reports (the
# jail routes only to the broker anyway; these keep the CLI from waiting on what cannot answer).
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}

# Older CLIs print "Claude AI usage limit reached|<epoch seconds of the reset>".
_RESET_EPOCH = re.compile(r"usage limit reached\|(\d{9,})", re.IGNORECASE)
_LIMITED = re.compile(
    r"usage limit|limit reached|hit your limit|rate.?limit|overloaded|API Error: (429|529)",
    re.IGNORECASE,
)
_SUBTYPE_LIMITS: Mapping[str, LimitName] = {
    "error_max_turns": "max_turns",
    "error_max_budget_usd": "max_usd",
}


class ClaudeCodeExecutor:
    """Runs the Claude Code CLI once per request and reads its JSON result.

    The CLI runs in the attempt's jail and holds no credential: the request's environment
    points it at the credential broker (``ANTHROPIC_BASE_URL``, a placeholder key), which
    enforces tokens and dollars while it runs. The CLI enforces turns itself
    (``--max-turns``) and the wall clock kills its jail. A run over a budget comes back
    ``ok=False`` with the limit named, even though its changes are in the workspace.
    """

    name = "claude-code"

    def __init__(
        self,
        *,
        binary: str = "claude",
        model: str | None = None,
        extra_args: Sequence[str] = DEFAULT_ARGS,
        task_flags: Collection[str] = (),
        default_backoff: float = DEFAULT_BACKOFF,
        grace: float = GRACE_SECONDS,
    ) -> None:
        found = shutil.which(binary)
        if found is None:
            raise ClusterError(
                f"the claude-code executor needs the Claude Code CLI ({binary!r} is not on PATH); "
                "install it or use the claude or command executor"
            )
        # Its real path: what the jail shows of it is its package (sandboxes.program_paths).
        self.binary = os.path.realpath(found)
        self._model = model
        self._extra_args = list(extra_args)
        self._task_flags = frozenset(task_flags)
        self._default_backoff = default_backoff
        self._grace = grace

    def refusal(self, model: str | None, args: tuple[str, ...]) -> str | None:
        """A task's args may use only the flags this agent's operator allowed
        (``claude_code_task_args``): others could widen what the CLI may do on the host."""
        del model
        for index, arg in enumerate(args):
            flag = arg.split("=", 1)[0]
            if arg.startswith("-") and flag not in self._task_flags:
                allowed = ", ".join(sorted(self._task_flags)) or "none"
                return f"task arg {flag!r} is not allowed on this agent (allowed: {allowed})"
            if not arg.startswith("-") and (index == 0 or not args[index - 1].startswith("-")):
                return f"task arg {arg!r} is no flag's value"
        return None

    def argv(self, request: ExecutionRequest) -> list[str]:
        argv = [self.binary, "-p", request.prompt, "--output-format", "json", *self._extra_args,
                *request.args]  # fmt: skip
        model = request.model or self._model
        if model:
            argv += ["--model", model]
        if request.budget.max_turns is not None:
            argv += ["--max-turns", str(request.budget.max_turns)]
        return argv

    def run(self, request: ExecutionRequest) -> ExecutionOutcome:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with request.log_path.open("ab") as log, tempfile.TemporaryFile() as stdout:
            log.write(f"[claude-code] task {request.task_id}\n".encode())
            log.flush()
            finished = run_in_group(
                self.argv(request),
                cwd=request.workspace,
                env=child_env(request.workspace, {**QUIET_ENV, **request.env}),
                timeout=request.timeout,
                output=stdout,
                errors=log,
                grace=self._grace,
                cancel=request.cancel,
                jail=request.jail,
            )
            stdout.seek(0)
            text = stdout.read().decode("utf-8", errors="replace")
            log.write(f"[claude-code] result: {text.strip()}\n".encode())
        if finished.timed_out:
            return ExecutionOutcome(
                ok=False, summary="", error=f"timed out after {request.timeout:g}s", limit="timeout"
            )
        return self.outcome(text, finished.returncode, request)

    def outcome(
        self, stdout: str, returncode: int | None, request: ExecutionRequest
    ) -> ExecutionOutcome:
        """Turn the CLI's JSON result into an outcome; raises :class:`RateLimited` on limits."""
        result = parse_result(stdout)
        if result is None:
            return ExecutionOutcome(
                ok=False,
                summary=stdout[-2000:],
                error=f"claude exited {returncode} without a JSON result",
            )
        raw_usage = result.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        text = str(result.get("result") or "")
        outcome = ExecutionOutcome(
            ok=False,
            summary=text,
            turns=_int(result.get("num_turns")),
            input_tokens=sum(
                _int(usage.get(name))
                for name in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            ),
            output_tokens=_int(usage.get("output_tokens")),
            cost_usd=_float(result.get("total_cost_usd")),
        )
        subtype = str(result.get("subtype") or "")
        failed = bool(result.get("is_error")) or returncode != 0 or subtype != "success"
        if failed and (_LIMITED.search(text) or _RESET_EPOCH.search(text)):
            raise RateLimited(self._wait(text), text[:300])
        if subtype in _SUBTYPE_LIMITS:
            outcome.limit = _SUBTYPE_LIMITS[subtype]
            outcome.error = f"claude stopped: {subtype}"
        elif failed:
            outcome.error = (
                f"claude failed ({subtype or 'no subtype'}, exit {returncode}): {text[:500]}"
            )
        elif (limit := _over_budget(outcome, request)) is not None:
            outcome.limit = limit
            outcome.error = f"run exceeded its {limit} budget"
        else:
            outcome.ok = True
        return outcome

    def _wait(self, text: str) -> float:
        found = _RESET_EPOCH.search(text)
        if found is None:
            return self._default_backoff
        return max(int(found[1]) - time.time(), 0.0)


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The ``type: result`` object the CLI prints last, or None."""
    candidates = [stdout, *reversed(stdout.strip().splitlines())]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("type") == "result":
            return data
    return None


def _over_budget(outcome: ExecutionOutcome, request: ExecutionRequest) -> LimitName | None:
    budget = request.budget
    if (
        budget.max_tokens is not None
        and outcome.input_tokens + outcome.output_tokens > budget.max_tokens
    ):
        return "max_tokens"
    if budget.max_usd is not None and outcome.cost_usd > budget.max_usd:
        return "max_usd"
    return None


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
