"""The chaos fault schedule: seeded, every kind present, faults long enough to bite."""

from __future__ import annotations

from cluster.chaos.schedule import KINDS, LONG_CUT_SECONDS, plan


def test_schedule_is_seeded_and_covers_every_kind() -> None:
    first, again = plan(7, 60.0, 12, 6.0), plan(7, 60.0, 12, 6.0)
    assert first == again and plan(8, 60.0, 12, 6.0) != first
    assert {f.kind for f in first} == set(KINDS)
    assert all(0 <= f.at <= 60.0 for f in first)


def test_pauses_outlast_the_lease_and_one_cut_outlasts_ssh_timeouts() -> None:
    for seed in range(20):
        faults = plan(seed, 60.0, 12, 6.0)
        assert all(f.seconds > 6.0 for f in faults if f.kind == "stop")
        assert max(f.seconds for f in faults if f.kind == "cut") >= LONG_CUT_SECONDS
