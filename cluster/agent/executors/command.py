"""The `command` executor: the task's shell command in its own process group, under a timeout."""

from __future__ import annotations

import os
from pathlib import Path

from cluster.agent.executors.base import ExecutionOutcome, ExecutionRequest
from cluster.agent.process import GRACE_SECONDS, child_env, run_in_group

TAIL_BYTES = 2000


class CommandExecutor:
    """Runs the request's prompt as a ``bash -c`` command line in the workspace."""

    name = "command"

    def __init__(self, *, grace: float = GRACE_SECONDS) -> None:
        self._grace = grace

    def refusal(self, model: str | None, args: tuple[str, ...]) -> str | None:
        return "the command executor takes no model or args" if model or args else None

    def run(self, request: ExecutionRequest) -> ExecutionOutcome:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with request.log_path.open("ab") as log:
            start = log.tell()
            log.write(f"[command] task {request.task_id}: bash -c {request.prompt!r}\n".encode())
            log.flush()
            finished = run_in_group(
                ["bash", "-c", request.prompt],
                cwd=request.workspace,
                env=child_env(request.workspace, request.env),
                timeout=request.timeout,
                output=log,
                grace=self._grace,
                cancel=request.cancel,
                jail=request.jail,
            )
            ending = "timed out" if finished.timed_out else f"exit {finished.returncode}"
            log.write(f"[command] {ending}\n".encode())
        tail = _tail(request.log_path, start)
        if finished.timed_out:
            return ExecutionOutcome(
                ok=False,
                summary=tail,
                error=f"command timed out after {request.timeout:g}s",
                limit="timeout",
            )
        if finished.returncode != 0:
            return ExecutionOutcome(
                ok=False, summary=tail, error=f"command exited {finished.returncode}"
            )
        return ExecutionOutcome(ok=True, summary=tail)


def _tail(path: Path, start: int) -> str:
    """The last bytes this run appended to the log, as text for the result."""
    with path.open("rb") as log:
        size = log.seek(0, os.SEEK_END)
        log.seek(max(start, size - TAIL_BYTES))
        return log.read().decode("utf-8", errors="replace")
