"""The executor contract: what a runner hands an executor and what it gets back."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from cluster.errors import ClusterError
from cluster.state.records import Outcome
from cluster.state.statuses import PauseCause

if TYPE_CHECKING:
    from cluster.sandbox.jail import Jail

LimitName = Literal["max_turns", "max_tokens", "max_usd", "timeout"]
# The model a task runs with when neither it nor its agent names one (priced: docs/agent.md).
DEFAULT_MODEL = "claude-sonnet-4-6"


@dataclass(frozen=True)
class Budget:
    """Limits the runner enforces on one execution; ``None`` means unlimited."""

    max_turns: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None


@dataclass(frozen=True)
class ExecutionRequest:
    """One attempt at one task.

    ``env`` is the whole environment of the processes the executor starts, on top of a minimal
    base (PATH, LANG, HOME=workspace): the agent's own environment, which holds its secrets, is
    never inherited. ``jail`` is the attempt's sandbox: every process the executor starts runs
    in it (``None`` only when the operator set ``sandbox: off``). ``cancel`` is set when the
    claim is lost, the task is cancelled or the agent stops: the executor stops its processes
    and returns within seconds.
    """

    task_id: str
    workspace: Path
    prompt: str
    specialty: str
    budget: Budget
    timeout: float
    log_path: Path
    env: Mapping[str, str]
    model: str | None = None  # the task's model, instead of the agent's
    args: tuple[str, ...] = ()  # the task's extra CLI arguments (claude-code only)
    jail: Jail | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, kw_only=True)
class ExecutionOutcome(Outcome):
    """What an execution did: the attempt's :class:`~cluster.state.records.Outcome` as far as
    the executor knows it (summary, turns, tokens, cost), with its verdict. The task runner
    completes this same value into what the record carries; the verdict (``ok``, ``error``,
    ``limit``) stays out of records. Failure is data here, only rate limits raise."""

    ok: bool
    error: str | None = None
    limit: LimitName | None = None


class Executor(Protocol):
    """Runs one request to completion; raises only :class:`RateLimited` on purpose."""

    name: str

    def refusal(self, model: str | None, args: tuple[str, ...]) -> str | None:
        """Why a task asking for ``model`` and ``args`` cannot run here (None: it can); asked
        before the attempt starts, so that such a task is invalid instead of failing each try."""
        ...

    def run(self, request: ExecutionRequest) -> ExecutionOutcome: ...


class RateLimited(ClusterError):
    """An API said 429/529 or a usage limit: the agent pauses claiming and does not count the
    attempt. ``retry_after`` is in seconds; ``stated`` says whether the server (or the CLI) gave
    it, or whether it is the executor's default backoff, which a better source may replace.
    This one is the model API's; the forge's is :class:`cluster.agent.forge.ForgeRateLimited`."""

    cause: ClassVar[PauseCause] = "model_limit"  # the pause it becomes: shared, see docs/agent.md

    def __init__(self, retry_after: float, message: str, *, stated: bool = True) -> None:
        self.retry_after = retry_after
        self.stated = stated
        self.detail = message
        super().__init__(self._message(retry_after, message))

    @staticmethod
    def _message(retry_after: float, detail: str) -> str:
        return f"rate limited, retry after {retry_after:.0f}s: {detail}"
