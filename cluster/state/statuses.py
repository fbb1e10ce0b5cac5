"""The closed status vocabulary, each list written once: results, releases, attempts, agents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeGuard, get_args

# A result's status: the task is over for good and nothing claims it again.
Terminal = Literal["succeeded", "failed", "invalid", "cancelled", "timed_out"]
TERMINAL: tuple[Terminal, ...] = get_args(Terminal)

# A release's status: the attempt handed the task back for a later one. failed and timed_out
# burn one of the task's tries (``counted``); paused does not (a limit, a refused credential,
# a shutdown: nobody's failure).
ReleaseStatus = Literal["failed", "timed_out", "paused"]
RELEASE_STATUSES: tuple[ReleaseStatus, ...] = get_args(ReleaseStatus)

# What one attempt of a runner reports, before the agent makes it a result or a release
# (:data:`SETTLES` says which).
AttemptStatus = Literal["succeeded", "failed", "timed_out", "paused", "stopped", "invalid"]
# Why an attempt paused: the model API's limit (shared by every agent holding its credential),
# the forge's, or the model credential refused (the agent stops claiming).
PauseCause = Literal["model_limit", "forge_limit", "credential"]

# An agent's heartbeat state. blocked: the model API refused its credential; it claims nothing
# until restarted.
AgentState = Literal["running", "paused", "blocked", "draining", "stopped"]


def is_terminal(status: str) -> TypeGuard[Terminal]:
    return status in TERMINAL


@dataclass(frozen=True)
class Retry:
    """The task goes back for a later attempt, released with ``status``; ``counted``: the
    attempt burnt one of the task's tries (the next one gets the next number)."""

    status: ReleaseStatus
    counted: bool


# Attempt counting, written once: what each status a runner reports does to its task. A
# Terminal ends it on any try. A Retry hands it back: counted (failed, timed_out), and then on
# the task's last try it ends with that status as its result instead; or not counted (paused,
# stopped: a limit, a refused credential, a lost claim, a shutdown are nobody's failure).
# The agent publishes by it (cluster.agent.loop); the next claim numbers its attempt by it
# (cluster.state.client), as the task runner decides by it what is kept for a retry.
SETTLES: Mapping[AttemptStatus, Terminal | Retry] = MappingProxyType({
    "succeeded": "succeeded",
    "invalid": "invalid",
    "failed": Retry("failed", counted=True),
    "timed_out": Retry("timed_out", counted=True),
    "paused": Retry("paused", counted=False),
    "stopped": Retry("paused", counted=False),
})
# A claim whose lease expired and that another agent takes over counts as a failed attempt:
# its holder vanished (killed, cut off) in the middle of the work.
EXPIRED: AttemptStatus = "failed"


def settle(status: AttemptStatus, attempt: int, max_attempts: int) -> Terminal | Retry:
    """Where attempt number ``attempt`` (of ``max_attempts``) that ended ``status`` leaves
    its task: the result that ends it, or the release that hands it back (:data:`SETTLES`)."""
    rule = SETTLES[status]
    last = isinstance(rule, Retry) and rule.counted and attempt >= max_attempts
    if last and isinstance(rule, Retry) and is_terminal(rule.status):
        return rule.status  # the last try: what would have been retried is the result
    return rule


def counts(status: AttemptStatus) -> bool:
    """Does an attempt that ended ``status`` burn one of its task's tries (released counted,
    or the result on the last try)?"""
    rule = SETTLES[status]
    return isinstance(rule, Retry) and rule.counted


def next_attempt(attempt: int, counted: bool) -> int:
    """The number of the attempt after attempt ``attempt``: the next one when it burnt a try,
    the same again when it was released uncounted."""
    return attempt + 1 if counted else attempt


__all__ = [
    "EXPIRED",
    "RELEASE_STATUSES",
    "SETTLES",
    "TERMINAL",
    "AgentState",
    "AttemptStatus",
    "PauseCause",
    "ReleaseStatus",
    "Retry",
    "Terminal",
    "counts",
    "is_terminal",
    "next_attempt",
    "settle",
]
