"""What an agent does with a claimed task: the attempt report and the offline command runner."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cluster.agent.executors.base import Budget
from cluster.agent.process import child_env, run_shell
from cluster.sandbox.sandboxes import Sandboxes, default_sandboxes
from cluster.sandbox.seal import Sealer, log_line
from cluster.secret import Secret
from cluster.state.client import Held
from cluster.state.records import Outcome
from cluster.state.statuses import AttemptStatus, PauseCause


@dataclass(frozen=True)
class AttemptReport:
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

    def run(self, held: Held, cancel: threading.Event) -> AttemptReport: ...


class CommandRunner:
    """Runs ``command`` tasks in a scratch workspace, then their ``verify`` command, both in
    the attempt's jail."""

    def __init__(self, workdir: Path, sandboxes: Sandboxes | None = None) -> None:
        self.workspaces = workdir / "workspaces"
        self.logs = workdir / "logs"
        self.sandboxes = sandboxes or default_sandboxes(workdir)
        self.secrets: Sequence[Secret] = ()  # it holds none

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
        status: AttemptStatus = "succeeded"
        reason = ""
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
                result = run_shell(command, workspace, max(0.0, deadline - time.time()), log,
                                   {**env, **seal.env}, cancel, seal.jail)  # fmt: skip
                if result.timed_out:
                    status, reason = ("timed_out",
                                      f"{step} exceeded the task timeout of {spec.timeout}s")
                elif result.cancelled:
                    status, reason = ("stopped",
                                      f"{step} stopped: the claim was lost or the agent stops")
                elif result.returncode != 0:
                    status, reason = "failed", f"{step} exited with {result.returncode}"
                if status != "succeeded":
                    break
        finished = time.time()
        if status == "succeeded":
            shutil.rmtree(workspace, ignore_errors=True)
        outcome = Outcome(
            started_at=started, finished_at=finished, duration_s=round(finished - started, 3),
            summary=f"ran {spec.executor.kind} executor" + (" and verify" if spec.verify else ""),
            log=str(log),
        )
        return AttemptReport(status, reason, outcome)
