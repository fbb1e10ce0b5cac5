"""The `command` executor: the task's shell command in its own process group, under a timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cluster.agent.executors.base import ExecutionOutcome, ExecutionRequest

GRACE_SECONDS = 2.0
TAIL_BYTES = 2000


@dataclass(frozen=True)
class Finished:
    """How a process group ended: its leader's exit code, or ``None`` when the timeout hit."""

    returncode: int | None
    timed_out: bool


def child_env(workspace: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a task's processes: a minimal base plus ``extra``, never the agent's
    own environment (it holds the agent's secrets)."""
    base = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "HOME": str(workspace),
    }
    return {**base, **extra}


def run_in_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    output: BinaryIO,
    errors: BinaryIO | None = None,
    grace: float = GRACE_SECONDS,
) -> Finished:
    """Run ``argv`` as the leader of a new process group, stdout into ``output`` and stderr into
    ``errors`` (default: ``output`` too).

    On timeout the whole group gets SIGTERM, then SIGKILL after ``grace`` seconds. Whatever the
    command left running in its group is killed too when it exits: nothing a task starts may
    outlive it and keep writing to the workspace.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if errors is None else errors,
        start_new_session=True,
    )
    try:
        returncode = proc.wait(timeout=max(timeout, 0.0))
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        return Finished(returncode=None, timed_out=True)
    finally:
        # Also reached on KeyboardInterrupt and friends: never leave the group behind.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    return Finished(returncode=returncode, timed_out=False)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group id is the leader's pid (start_new_session); it is gone once every member exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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
