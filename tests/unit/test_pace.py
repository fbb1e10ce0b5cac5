"""The fallbacks' stagger follows the agent's measured reads and claim pushes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster.agent.choose import STAGGER
from cluster.agent.pace import MEASURED_CAP, Pace


def test_unmeasured_and_fast_repos_keep_the_least_stagger() -> None:
    assert Pace().stagger(5.0, polled=False) == STAGGER
    fast = Pace()
    for _ in range(5):
        fast.saw_read(0.02)
        fast.saw_push(0.05)
    assert fast.stagger(5.0, polled=False) == STAGGER


def test_a_slow_repo_keeps_fallbacks_back_until_the_owners_claim_is_visible() -> None:
    """Owner and fallback first see a task at the same read; the owner's claim is accepted a
    push later and the fallback sees it a read after that. The first fallback must not step
    in before then (a fixed 0.3 s did, on a repo whose pushes took a second)."""
    pace = Pace()
    read, push = 0.4, 1.1
    for _ in range(8):
        pace.saw_read(read)
        pace.saw_push(push)
    visible = push + read
    assert visible > STAGGER  # the control: the fixed stagger steps in too early here
    assert pace.stagger(5.0, polled=False) > visible
    # Polled remotes: the owner may learn of the task a whole poll interval after us.
    assert pace.stagger(5.0, polled=True) > 5.0 + visible


def test_the_average_moves_toward_new_measurements() -> None:
    pace = Pace()
    pace.saw_push(2.0)
    assert pace.push == 2.0  # the first measurement is taken whole
    for _ in range(30):
        pace.saw_push(0.1)
    assert pace.push < 0.2


@given(st.lists(st.floats(min_value=-1e6, max_value=1e9, allow_nan=False), max_size=40),
       st.floats(min_value=0, max_value=600))
def test_stagger_is_bounded_whatever_is_measured(samples: list[float], poll: float) -> None:
    pace = Pace()
    for value in samples:
        pace.saw_read(value)
        pace.saw_push(value)
    for polled in (False, True):
        got = pace.stagger(poll, polled=polled)
        assert STAGGER <= got <= max(STAGGER, MEASURED_CAP + (poll if polled else 0.0))
