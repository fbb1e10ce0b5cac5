"""The closed status vocabulary, each list written once: results, releases, attempts, agents."""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

# A result's status: the task is over for good and nothing claims it again.
Terminal = Literal["succeeded", "failed", "invalid", "cancelled", "timed_out"]
TERMINAL: tuple[Terminal, ...] = get_args(Terminal)

# A release's status: the attempt handed the task back for a later one. failed and timed_out
# burn one of the task's tries (``counted``); paused does not (a limit, a refused credential,
# a shutdown: nobody's failure).
ReleaseStatus = Literal["failed", "timed_out", "paused"]
RELEASE_STATUSES: tuple[ReleaseStatus, ...] = get_args(ReleaseStatus)

# What one attempt of a runner reports, before the agent makes it a result or a release:
# succeeded and invalid end the task; failed and timed_out are Counted; paused and stopped
# (the claim was lost or the agent stops) are released as paused, not counted.
AttemptStatus = Literal["succeeded", "failed", "timed_out", "paused", "stopped", "invalid"]
# The attempt statuses that burn a try: released counted, or the result on the last try.
Counted = Literal["failed", "timed_out"]
COUNTED: tuple[Counted, ...] = get_args(Counted)
# Why an attempt paused: the model API's limit (shared by every agent holding its credential),
# the forge's, or the model credential refused (the agent stops claiming).
PauseCause = Literal["model_limit", "forge_limit", "credential"]

# An agent's heartbeat state. blocked: the model API refused its credential; it claims nothing
# until restarted.
AgentState = Literal["running", "paused", "blocked", "draining", "stopped"]


def is_terminal(status: str) -> TypeGuard[Terminal]:
    return status in TERMINAL


__all__ = [
    "COUNTED",
    "RELEASE_STATUSES",
    "TERMINAL",
    "AgentState",
    "AttemptStatus",
    "Counted",
    "PauseCause",
    "ReleaseStatus",
    "Terminal",
    "is_terminal",
]
