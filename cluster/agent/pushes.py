"""The agent's pushes, counted by what each was for (``claude_cluster_pushes_total{kind}``),
and, under the hosted profile, its heartbeat riding along on a write it makes anyway."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cluster.state.gitcmd import PushReport, RefUpdate
from cluster.state.remote import StateRemote

# Pushes that leave no commit of their own (replaced in place), which a heartbeat counts in
# its ``beats_hour`` for health's push rate.
IN_PLACE = frozenset({"heartbeat", "renew", "stop"})
HOUR = 3600.0


class CountedRemote:
    """The agent's state remote with every push counted by what it was for (the metrics'
    ``claude_cluster_pushes_total{kind}``), and, under the hosted profile, the agent's
    heartbeat riding along on the next single-ref write (a claim, a result): one push updates
    both refs. The rider's fate never changes the write's: it is taken out of the report."""

    def __init__(self, remote: StateRemote, count: Callable[[str], None]) -> None:
        self.inner = remote
        self.count = count
        self.kind = "other"
        self.rider: RefUpdate | None = None
        self.rode: str | None = None  # the heartbeat commit the remote took with a write

    def taken(self) -> str | None:
        """The heartbeat commit the remote took with a write since the last call."""
        rode, self.rode = self.rode, None
        return rode

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def push(self, updates: Sequence[RefUpdate], *, atomic: bool = False) -> PushReport:
        self.count(self.kind)
        rider, self.rider = self.rider, None
        if rider is None or atomic or len(updates) != 1:
            return self.inner.push(updates, atomic=atomic)
        report = self.inner.push([*updates, rider])
        if rider.ref in report.accepted:
            self.rode = rider.new
        return PushReport(report.accepted - {rider.ref}, report.rejected - {rider.ref},
                          report.locks)
