"""Reclaim time: from a holder's death (fault record) to the takeover claim in history."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.chaos.inject import FaultRecord
from cluster.state.checker import Report
from cluster.state.records import Claim


@dataclass(frozen=True)
class Reclaim:
    task: str
    kind: str  # the fault that took the holder out ("other": no fault matches)
    holder: str
    seconds: float | None  # takeover claimed_at minus the fault's moment


def reclaims(report: Report, faults: Sequence[FaultRecord]) -> list[Reclaim]:
    """Every takeover in history, matched to the latest fault on the holder's host that hit
    after the taken-over claim was made and before the takeover (agent id = host name)."""
    found = []
    for key, history in sorted(report.histories.items()):
        for record in history.records.values():
            if not isinstance(record, Claim) or not record.takeover_of:
                continue
            old = history.records.get(record.takeover_of)
            if not isinstance(old, Claim):
                continue
            hits = [f for f in faults if f.ok and f.host == old.agent
                    and old.claimed_at <= f.at <= record.claimed_at]  # fmt: skip
            fault = max(hits, key=lambda f: f.at, default=None)
            found.append(Reclaim(key, fault.kind if fault else "other", old.agent,
                                 record.claimed_at - fault.at if fault else None))  # fmt: skip
    return found


def figures(found: Sequence[Reclaim], kinds: Sequence[str] = ("kill", "stop")) -> dict[str, float]:
    """p50 and max reclaim seconds over the takeovers caused by ``kinds`` (0 when none)."""
    times = sorted(r.seconds for r in found if r.kind in kinds and r.seconds is not None)
    if not times:
        return {"count": 0, "p50": 0.0, "max": 0.0}
    return {"count": len(times), "p50": round(statistics.median(times), 2),
            "max": round(times[-1], 2)}  # fmt: skip
