"""How long a fallback waits for a task's owner: sized to how fast this fleet sees a claim.

A task owned by another agent becomes claimable by the next agent in its rendezvous line one
stagger after it was first seen (docs/state-protocol.md, "Waking up and choosing"). The owner
needs that long to learn of the task, read the repo and get its claim accepted, and the
fallback to read that claim. A fixed fraction of a second holds on a quiet local repo; where
reads and pushes take seconds (a loaded state host, a hosted repo) the fallbacks stepped in
before any owner's claim could be seen, and every refused claim was one more push. So the
stagger follows this agent's own recent read and claim-push times (its fleet shares the
state repo, and mostly the machine class), plus a poll interval where the owner learns of new
work only by polling.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.agent.choose import STAGGER

WEIGHT = 0.25  # of each new measurement in the moving average
MARGIN = 1.5  # the owner's read and push, and the fallback's read after it, vary
MEASURED_CAP = 10.0  # seconds: a stalled remote does not park every fallback for minutes


@dataclass
class Pace:
    """Moving averages of this agent's state reads and claim pushes, in seconds."""

    read: float = 0.0
    push: float = 0.0

    def saw_read(self, seconds: float) -> None:
        self.read = _mix(self.read, seconds)

    def saw_push(self, seconds: float) -> None:
        self.push = _mix(self.push, seconds)

    def stagger(self, poll_seconds: float, *, polled: bool) -> float:
        """Seconds between one place in a task's line and the next."""
        measured = min(MEASURED_CAP, MARGIN * (self.read + self.push))
        return max(STAGGER, measured + (poll_seconds if polled else 0.0))


def _mix(average: float, seconds: float) -> float:
    seconds = max(0.0, seconds)
    return seconds if average == 0.0 else (1 - WEIGHT) * average + WEIGHT * seconds
