"""The `claude-code` executor: the Claude Code CLI (`claude -p`) in the attempt's jail.

How it is run (docs/agent.md, "The claude-code executor"):

- the prompt goes on the CLI's stdin, never on its command line: a prompt that starts with
  ``-`` would be read as an option, and one over the kernel's argument limit (128 KiB for one
  argument) would not start at all;
- the task's budget becomes ``--max-turns`` and ``--max-budget-usd`` (the broker keeps tokens
  and dollars too, from what it relays);
- only the agent configures the CLI: no settings file is read (``--setting-sources ""``: not
  the jail's HOME, not the target repo's ``.claude/settings.json`` or
  ``settings.local.json``) and no MCP server is started (``--strict-mcp-config``: a repo's
  ``.mcp.json`` is ignored); a repo's ``CLAUDE.md`` still reaches the model as guidance;
- its output is ``stream-json``: the last line is the result, and the events before it carry
  what the JSON result does not, such as a usage limit's reset time;
- rate and usage limits are read from the result's fields (``api_error_status``, ``api_error``)
  and the reset time from the ``rate_limit_info`` the CLI reports; message text is matched only
  for older CLIs whose result has no ``api_error_status``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cluster.agent.credentials import CredentialRejected
from cluster.agent.executors.base import (
    DEFAULT_MODEL,
    ExecutionOutcome,
    ExecutionRequest,
    LimitName,
    RateLimited,
)
from cluster.agent.process import GRACE_SECONDS, child_env, run_in_group
from cluster.agent.ratelimit import MAX_WAIT
from cluster.errors import ClusterError

DEFAULT_BACKOFF = 60.0
# Headless runs cannot answer permission prompts: the attempt's jail is what bounds the CLI.
DEFAULT_ARGS = ("--permission-mode", "bypassPermissions")
# What the target repo (or anything written to the jail's HOME) may not change: the endpoint,
# the credential, the permission mode, the tools, hooks and MCP servers all come from settings
# files, and the CLI reads none. These come after the task's and the operator's arguments, so
# that they win.
BOUNDARY_ARGS = ("--setting-sources", "", "--strict-mcp-config")
# With the project's settings off, the CLI reads the work tree's CLAUDE.md only as an added
# directory's (``--add-dir``, with this): the repo's guidance still reaches the model.
CLAUDE_MD_ENV = {"CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD": "1"}
OUTPUT_ARGS = ("--output-format", "stream-json", "--verbose")
# The CLI calls nothing but the model API: no update checks, telemetry or error reports (the
# jail routes only to the broker anyway; these keep the CLI from waiting on what cannot answer).
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
# The CLI refuses to bypass permissions as root (its own check, before any request).
ROOT_REFUSAL = "cannot be used with root/sudo privileges"
ROOT_ERROR = (
    "the Claude Code CLI refuses --permission-mode bypassPermissions (and "
    "--dangerously-skip-permissions) as root, and this attempt runs unsealed (sandbox: off) as "
    "root; run the agent sealed (the default sandbox: mode on, where the CLI is uid 1000 in its "
    "jail) or as a non-root user"
)
# The result's ``api_error`` for a subscription's usage window (5-hour, weekly).
USAGE_LIMIT_ERRORS = frozenset({"usage_limit_reached"})
LIMIT_STATUSES = frozenset({429, 529})
LOG_CHARS = 500  # of one event's text in the attempt's log

# Older CLIs (no api_error_status in their result) said so only in words:
# "Claude AI usage limit reached|<epoch seconds of the reset>".
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
    """Runs the Claude Code CLI once per request and reads its stream-json result.

    The CLI runs in the attempt's jail and holds no credential: the request's environment
    points it at the credential broker (``ANTHROPIC_BASE_URL``, a placeholder key), which
    enforces tokens and dollars while it runs. The CLI enforces turns and dollars itself too
    (``--max-turns``, ``--max-budget-usd``) and the wall clock kills its jail. A run over a
    budget comes back ``ok=False`` with the limit named, even though its changes are in the
    workspace.
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
        self._model = model or DEFAULT_MODEL  # the documented default, which has a price
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

    def boundary_args(self, request: ExecutionRequest) -> list[str]:
        """The options that keep the target repo from reconfiguring the CLI (its CLAUDE.md is
        read all the same, as the work tree's added directory)."""
        return [*BOUNDARY_ARGS, "--add-dir", str(request.workspace)]

    def argv(self, request: ExecutionRequest) -> list[str]:
        """The CLI's command line; the prompt is not on it (it goes on stdin)."""
        argv = [self.binary, "-p", *request.args, *self._extra_args, *OUTPUT_ARGS,
                *self.boundary_args(request), "--model", request.model or self._model]  # fmt: skip
        budget = request.budget
        if budget.max_turns is not None:
            argv += ["--max-turns", str(budget.max_turns)]
        if budget.max_usd is not None:
            argv += ["--max-budget-usd", repr(float(budget.max_usd))]
        return argv

    def run(self, request: ExecutionRequest) -> ExecutionOutcome:
        argv = self.argv(request)
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        if request.jail is None and os.geteuid() == 0 and _bypasses(argv):
            with request.log_path.open("ab") as log:
                log.write(f"[claude-code] task {request.task_id}: not run: {ROOT_ERROR}\n".encode())
            return ExecutionOutcome(ok=False, summary="", error=ROOT_ERROR)
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(request.log_path.open("ab"))
            stdout = stack.enter_context(tempfile.TemporaryFile())
            stderr = stack.enter_context(tempfile.TemporaryFile())
            prompt = stack.enter_context(tempfile.TemporaryFile())
            prompt.write(request.prompt.encode("utf-8"))
            prompt.seek(0)
            env = {**QUIET_ENV, **CLAUDE_MD_ENV, **request.env}
            if request.jail is None:
                # Sealed, the jail's private /tmp holds the CLI's /tmp/claude-<uid>/; unsealed,
                # a directory of this run's own does, removed with it.
                private = tempfile.mkdtemp(prefix="ccc-cli-tmp-")
                stack.callback(shutil.rmtree, private, True)
                env.update(TMPDIR=private, CLAUDE_CODE_TMPDIR=private)
            log.write(f"[claude-code] task {request.task_id}: {len(request.prompt)} characters "
                      "of prompt on stdin\n".encode())  # fmt: skip
            # Wall-clock stamps of the CLI's start and exit, for bench/agent.py's overhead.
            log.write(f"[claude-code] CLI started at {time.time():.6f}\n".encode())
            log.flush()
            finished = run_in_group(
                argv,
                cwd=request.workspace,
                env=child_env(request.workspace, env),
                timeout=request.timeout,
                output=stdout,
                errors=stderr,
                grace=self._grace,
                cancel=request.cancel,
                jail=request.jail,
                stdin=prompt,
            )
            code = "killed" if finished.returncode is None else finished.returncode
            log.write(f"[claude-code] CLI exited ({code}) at {time.time():.6f} after "
                      f"{finished.duration_s:.3f}s\n".encode())  # fmt: skip
            stdout.seek(0)
            text = stdout.read().decode("utf-8", errors="replace")
            stderr.seek(0)
            errors = stderr.read().decode("utf-8", errors="replace")
            log.write(errors.encode())
            for line in _log_lines(text):
                log.write(f"[claude-code] {line}\n".encode())
        if finished.timed_out:
            return ExecutionOutcome(
                ok=False, summary="", error=f"timed out after {request.timeout:g}s", limit="timeout"
            )
        if parse_result(text) is None and ROOT_REFUSAL in errors:
            return ExecutionOutcome(ok=False, summary=errors[-2000:], error=ROOT_ERROR)
        return self.outcome(text, finished.returncode, request)

    def outcome(
        self, stdout: str, returncode: int | None, request: ExecutionRequest
    ) -> ExecutionOutcome:
        """Turn the CLI's result into an outcome; raises :class:`RateLimited` on limits."""
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
        if failed and result.get("api_error_status") == 401:
            # Unsealed runs have no broker to see the 401: the CLI's own result says it.
            raise CredentialRejected(f"the model API refused the credential (401): {text[:300]}")
        if failed and _limited(result, text):
            wait, stated = self._wait(stdout, text)
            status = result.get("api_error_status")
            kind = result.get("api_error") or (f"API {status}" if status else "limit")
            raise RateLimited(wait, f"{kind}: {text[:300]}", stated=stated)
        if subtype in _SUBTYPE_LIMITS:
            return replace(outcome, limit=_SUBTYPE_LIMITS[subtype],
                           error=f"claude stopped: {subtype}")
        if failed:
            return replace(outcome, error=f"claude failed ({subtype or 'no subtype'}, "
                                          f"exit {returncode}): {text[:500]}")
        if (limit := _over_budget(outcome, request)) is not None:
            return replace(outcome, limit=limit, error=f"run exceeded its {limit} budget")
        return replace(outcome, ok=True)

    def _wait(self, stdout: str, text: str) -> tuple[float, bool]:
        """How long to pause, and whether the CLI said so (else the default backoff)."""
        resets = list(reset_times(stdout))
        if resets:
            return _clamp(max(resets) - time.time()), True
        found = _RESET_EPOCH.search(text)
        if found is not None:
            return _clamp(int(found[1]) - time.time()), True
        return self._default_backoff, False


def _bypasses(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks the CLI to bypass permissions (which it refuses as root)."""
    for index, arg in enumerate(argv):
        if arg == "--dangerously-skip-permissions" or arg == "--permission-mode=bypassPermissions":
            return True
        if arg == "--permission-mode" and argv[index + 1 : index + 2] == ["bypassPermissions"]:
            return True
    return False


def _limited(result: Mapping[str, Any], text: str) -> bool:
    """Whether a failed result is a rate or usage limit (a pause, not a failure)."""
    if "api_error_status" not in result:  # a CLI too old to say: its words are all there is
        return bool(_LIMITED.search(text) or _RESET_EPOCH.search(text))
    return (
        result.get("api_error_status") in LIMIT_STATUSES
        or result.get("api_error") in USAGE_LIMIT_ERRORS
    )


def _events(stdout: str) -> Iterator[dict[str, Any]]:
    """Every JSON object the CLI printed: one per line (stream-json), or one document (json)."""
    lines = stdout.strip().splitlines()
    for candidate in lines if len(lines) > 1 else [stdout]:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            yield data


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The ``type: result`` object the CLI prints last, or None."""
    results = [event for event in _events(stdout) if event.get("type") == "result"]
    return results[-1] if results else None


def reset_times(stdout: str) -> Iterator[float]:
    """The reset times (epoch seconds) of the limits the CLI reported as rejected: from its
    ``rate_limit_event`` lines and from the API error messages' ``api_error_params``."""
    for event in _events(stdout):
        infos = [event.get("rate_limit_info")]
        params = event.get("api_error_params")
        if isinstance(params, dict):
            infos.append(params.get("rate_limit_info"))
        for info in infos:
            if not isinstance(info, dict) or info.get("status") not in (None, "rejected"):
                continue
            when = info.get("resetsAt")
            if isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(when):
                yield float(when)


def _log_lines(stdout: str) -> Iterator[str]:
    """One short line per event for the attempt's log; the result line whole."""
    for raw in stdout.strip().splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            yield f"output: {raw[:LOG_CHARS]}"
            continue
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "result":
            yield f"result: {raw}"
        elif kind in ("assistant", "user"):
            message = event.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict):
                    yield _block_line(kind, block)
        elif kind == "rate_limit_event":
            yield f"rate limit: {json.dumps(event.get('rate_limit_info'))[:LOG_CHARS]}"
        elif kind == "system":
            yield (f"system {event.get('subtype')}: model {event.get('model')}, "
                   f"permission mode {event.get('permissionMode')}, "
                   f"tools {','.join(map(str, event.get('tools') or []))}")  # fmt: skip


def _block_line(role: str, block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "tool_use":
        return f"tool_use {block.get('name')}: {json.dumps(block.get('input'))[:LOG_CHARS]}"
    if kind == "tool_result":
        content = block.get("content")
        shown = content if isinstance(content, str) else json.dumps(content)
        error = " (error)" if block.get("is_error") else ""
        return f"tool_result{error}: {shown[:LOG_CHARS]}"
    if kind == "text":
        return f"{role} text: {str(block.get('text'))[:LOG_CHARS]}"
    return f"{role} {kind}"


def _clamp(wait: float) -> float:
    return min(max(wait, 0.0), MAX_WAIT)


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

