"""Real agent hosts under SIGKILL, SIGSTOP past the lease, network cuts and reboots.

The history checker reads a mirror of the state repo once every task is terminal: nothing
may be duplicated, lost or published by a fenced holder, and the faults must really have hit.
"""

from __future__ import annotations

import pytest

from cluster.chaos.schedule import KINDS
from cluster.chaos.workload import Outcome

pytestmark = pytest.mark.chaos


def test_every_task_done_once_under_faults(chaos_run: Outcome) -> None:
    summary = chaos_run.summary
    assert chaos_run.report.problems() == {}
    assert (summary["duplicated"], summary["lost"], summary["stale"]) == (0, 0, 0), summary
    assert summary["tasks"] == len(chaos_run.ids) >= 100
    assert summary["done"] == summary["tasks"]
    assert summary["statuses"] == {"succeeded": summary["tasks"]}, summary


def test_every_kind_of_fault_really_hit(chaos_run: Outcome) -> None:
    failed = [(f.kind, f.host, f.detail) for f in chaos_run.faults if not f.ok]
    assert not failed
    assert {f.kind for f in chaos_run.faults} == set(KINDS)
    assert any(f.held for f in chaos_run.faults if f.kind in ("kill", "stop"))


def test_history_shows_takeovers_and_fenced_holders(chaos_run: Outcome) -> None:
    assert chaos_run.summary["takeovers"] >= 1
    assert any(r.kind in ("kill", "stop") for r in chaos_run.reclaims), chaos_run.reclaims
    events = chaos_run.events
    assert events["takeover"] >= 1, events
    paused = [(f.host, f.held, f.detail) for f in chaos_run.faults if f.kind == "stop"]
    assert events["claim_lost"] + events["result_fenced"] >= 1, (events, paused)
    assert events["remote_unavailable"] >= 1, events  # the cut host noticed, then recovered
