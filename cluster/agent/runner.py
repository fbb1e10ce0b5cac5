"""What an agent does with a claimed task: the attempt report, the one "run a shell step and
judge it" both runners use, and the offline command runner."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cluster.agent.executors.base import Budget
from cluster.agent.process import child_env, run_shell
from cluster.sandbox.sandboxes import Sandboxes, default_sandboxes
from cluster.sandbox.seal import Sealer, log_line
from cluster.secret import Secret
from cluster.state.client import Held
from cluster.state.records import Outcome
from cluster.state.statuses import AttemptStatus, PauseCause

if TYPE_CHECKING:
    from cluster.sandbox.jail import Jail


@dataclass(frozen=True)
class AttemptReport:
    """How an attempt ended (``status``, ``reason``) and what it produced (``outcome``, the one
    value the release or result carries: cluster.state.records.Outcome)."""

    status: AttemptStatus
    reason: str = ""
    outcome: Outcome = field(default_factory=Outcome)
    retry_after: float = 0.0
    cause: PauseCause | None = None  # with status "paused"


class Runner(Protocol):
    @property
    def secrets(self) -> Sequence[Secret]:
        """What the agent masks in every log line and event."""
        ...

    @property
    def credentials(self) -> Mapping[str, str]:
        """Executor kind -> fingerprint of the model credential it uses (what the agent's
        heartbeat publishes, so that agents sharing a credential share its usage windows)."""
        ...

    def run(self, held: Held, cancel: threading.Event) -> AttemptReport: ...


def shell_step(step: str, command: str, cwd: Path, *, timeout: float, task_timeout: float,
               log: Path, env: Mapping[str, str], cancel: threading.Event,
               jail: Jail | None) -> tuple[AttemptStatus, str] | None:
    """Run one shell step of an attempt (``bash -c command``, in ``jail`` when there is one)
    with ``timeout`` seconds left of the task's ``task_timeout``: None when it passed, else
    the status and reason that end the attempt. The scratch runner's command and every
    verify go through here."""
    result = run_shell(command, cwd, max(0.0, timeout), log, env, cancel, jail)
    if result.timed_out:
        return "timed_out", f"{step} exceeded the task timeout of {task_timeout}s"
    if result.cancelled:
        return "stopped", f"{step} stopped: the claim was lost or the agent stops"
    if result.returncode != 0:
        return "failed", f"{step} exited with {result.returncode}"
    return None


class CommandRunner:
    """Runs ``command`` tasks in a scratch workspace, then their ``verify`` command, both in
    the attempt's jail."""

    def __init__(self, workdir: Path, sandboxes: Sandboxes | None = None) -> None:
        self.workspaces = workdir / "workspaces"
        self.logs = workdir / "logs"
        self.sandboxes = sandboxes or default_sandboxes(workdir)
        self.secrets: Sequence[Secret] = ()  # it holds none
        self.credentials: Mapping[str, str] = {}  # nor any model credential

    def run(self, held: Held, cancel: threading.Event) -> AttemptReport:
        spec = held.task.spec
        assert spec is not None
        started = time.time()
        if spec.executor.kind != "command" or spec.executor.command is None:
            return AttemptReport(
                "invalid", f"executor {spec.executor.kind!r} is not available on this agent",
                Outcome(started_at=started, finished_at=time.time(), duration_s=0.0),
            )
        workspace = self.workspaces / f"{held.key}-a{held.claim.attempt}"
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.mkdir(parents=True)
        log = self.logs / f"{held.key}-a{held.claim.attempt}.log"
        deadline = started + spec.timeout
        ended: tuple[AttemptStatus, str] | None = None
        sealer = Sealer(self.sandboxes)
        with sealer.attempt(
            f"{held.key}-a{held.claim.attempt}", workspace, budget=Budget(), model_api=False,
            note=lambda line: log_line(log, line, unsealed=sealer.off),
        ) as seal:
            for step, command in (("executor", spec.executor.command), ("verify", spec.verify)):
                if command is None:
                    continue
                # The task's own environment, never the agent's: that holds its secrets.
                env = child_env(workspace, {"CLUSTER_TASK_ID": held.key,
                                            "CLUSTER_ATTEMPT": str(held.claim.attempt)})
                ended = shell_step(step, command, workspace, timeout=deadline - time.time(),
                                   task_timeout=spec.timeout, log=log,
                                   env={**env, **seal.env}, cancel=cancel, jail=seal.jail)
                if ended is not None:
                    break
        status: AttemptStatus = "succeeded"
        reason = ""
        if ended is not None:
            status, reason = ended
        finished = time.time()
        if status == "succeeded":
            shutil.rmtree(workspace, ignore_errors=True)
        outcome = Outcome(
            started_at=started, finished_at=finished, duration_s=round(finished - started, 3),
            summary=f"ran {spec.executor.kind} executor" + (" and verify" if spec.verify else ""),
            log=str(log),
        )
        return AttemptReport(status, reason, outcome)
