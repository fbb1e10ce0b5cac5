"""A seeded, bounded fault schedule: which fault starts when and for how long (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["kill", "stop", "cut", "restart"]
KINDS: tuple[Kind, ...] = ("kill", "stop", "cut", "restart")
WEIGHTS = (4, 3, 3, 1)  # SIGKILL is the commonest fault in the field; reboots the slowest


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` at ``at`` seconds into the run, lasting ``seconds`` (0: instant)."""

    at: float
    kind: Kind
    seconds: float


LONG_CUT_SECONDS = 20.0


def plan(seed: int, span: float, count: int, lease: float) -> list[Fault]:
    """``count`` faults spread over ``span`` seconds, every kind at least once (if count >= 4).

    A SIGSTOP lasts past the lease (plus the readers' skew allowance) so that the paused
    holder is taken over and fenced when it resumes; a cut lasts from a fraction of a lease
    to past it, so that both recoveries (renewal in time, takeover) happen.
    """
    if count < 0 or span <= 0:
        raise ValueError("count must be >= 0 and span > 0")
    rng = random.Random(seed)
    kinds = list(KINDS[: min(count, len(KINDS))])
    kinds += rng.choices(KINDS, weights=WEIGHTS, k=count - len(kinds))
    rng.shuffle(kinds)
    slot = span / max(count, 1)
    faults = []
    long_cut = False
    for index, kind in enumerate(kinds):
        at = round(index * slot + rng.uniform(0, slot * 0.5), 2)
        seconds = _duration(rng, kind, lease)
        if kind == "cut" and not long_cut:
            # One cut outlasts ssh's ConnectTimeout and keep-alive window (10 s each), so that
            # the cut-off agent surely sees its remote fail; shorter cuts may only stall it.
            seconds, long_cut = max(seconds, LONG_CUT_SECONDS), True
        faults.append(Fault(at, kind, round(seconds, 2)))
    return faults


def _duration(rng: random.Random, kind: Kind, lease: float) -> float:
    if kind == "stop":
        return rng.uniform(1.6 * lease, 2.4 * lease)
    if kind == "cut":
        return rng.uniform(0.5 * lease, 2.2 * lease)
    return 0.0
