"""The figures of one chaos run, as one flat mapping (for --json, tables and docs)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cluster.chaos.reclaim import figures
from cluster.chaos.workload import Outcome

FENCE_EVENTS = ("claim_lost", "result_fenced")
TARGET_MARGIN = 30.0  # reclaimed within the lease plus this many seconds


def figures_of(outcome: Outcome) -> dict[str, Any]:
    summary = outcome.summary
    deaths = figures(outcome.reclaims, ("kill", "stop"))
    hit = Counter(f.kind for f in outcome.faults if f.ok)
    failed = [f"{f.kind}@{f.host}: {f.detail}" for f in outcome.faults if not f.ok]
    return {
        "tasks": summary["tasks"], "done": summary["done"],
        "duplicated": summary["duplicated"], "lost": summary["lost"], "stale": summary["stale"],
        "statuses": summary["statuses"], "takeovers": summary["takeovers"],
        "faults": dict(hit), "faults_failed": failed, "faults_skipped": outcome.skipped,
        "fenced_events": sum(outcome.events[e] for e in FENCE_EVENTS),
        "remote_unavailable_events": outcome.events["remote_unavailable"],
        "reclaims_by_kind": dict(Counter(r.kind for r in outcome.reclaims)),
        "reclaim_count": deaths["count"], "reclaim_p50_s": deaths["p50"],
        "reclaim_max_s": deaths["max"], "lease_s": outcome.lease,
        "reclaim_target_s": outcome.lease + TARGET_MARGIN,
        "reclaim_within_target": deaths["max"] <= outcome.lease + TARGET_MARGIN,
        "run_s": round(outcome.seconds, 1),
    }  # fmt: skip
