"""What one host's run ends as (a closed status vocabulary) and what all hosts of a run share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.settings import DeploySettings
from cluster.deploy.wanted import Wanted
from cluster.inventory.model import HostSpec

Status = Literal["changed", "ok", "failed", "skipped"]


@dataclass(frozen=True)
class HostOutcome:
    """``changed``: something changed (or would, with --check); ``ok``: already converged;
    ``failed``: a step went wrong (``reason`` says which and why); ``skipped``: not
    attempted (a rolling deploy stopped after an earlier batch failed).
    """

    host: str
    status: Status
    actions: tuple[str, ...] = ()
    reason: str = ""
    diffs: tuple[str, ...] = ()
    rolled_back: str = ""  # what the host was returned to after a failed apply or verify
    seconds: float = 0.0
    phases: tuple[tuple[str, float], ...] = ()  # (phase, seconds) in the order they ran

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def failure_reason(exc: Exception, host: str) -> str:
    """What went wrong on ``host``, without its name in front (the summary row names it)."""
    return str(exc).removeprefix(f"{host}: ")


def timed(outcome: HostOutcome, started: float) -> HostOutcome:
    """``outcome`` with the seconds since ``started`` (a ``time.monotonic()`` reading)."""
    return replace(outcome, seconds=round(time.monotonic() - started, 2))


@dataclass
class RunContext:
    """Shared by every host of a run: ``image`` is set before the hosts start, and
    nothing changes while they run (the semaphore and reader are thread-safe)."""

    settings: DeploySettings
    wanted: Callable[[HostSpec], Wanted]
    handshakes: threading.BoundedSemaphore
    reader: HeartbeatReader | None
    image: str | None = None  # the agent image built for container hosts in this run
