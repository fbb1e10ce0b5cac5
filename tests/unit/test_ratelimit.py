"""The one rate-limit reader: what a 429's headers or a spend-limit message ask a client to wait."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.agent.ratelimit import LIMITS, MAX_WAIT, retry_wait

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T = NOW.timestamp()
NAMES = [
    "retry-after",
    "retry-after-ms",
    *(f"anthropic-ratelimit-{limit}-{what}" for limit in LIMITS for what in ("reset", "remaining")),
]
SPENT = "You have reached your specified API usage limits. You will regain access on {} UTC."
times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.floats(min_value=-1e6, max_value=1e7, allow_nan=False)  # seconds from NOW


def rfc3339(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def wait(headers: dict[str, str], message: str = "") -> float | None:
    return retry_wait(headers, message, now=T)


# -- each source ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "17"}, 17.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "30"}, 1.5),  # the finer one first
        ({"retry-after-ms": "soon", "retry-after": "30"}, 30.0),
        ({"retry-after": email.utils.format_datetime(NOW + timedelta(seconds=90))}, 90.0),
        ({"retry-after": "Sun, 01 Mar 2026 12:01:30 -0000"}, 90.0),  # no zone: UTC
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": email.utils.format_datetime(NOW - timedelta(hours=1))}, 0.0),
        ({"retry-after": "nan", "retry-after-ms": "inf"}, None),
        ({"retry-after": "1e999"}, None),  # inf: skipped, not a wait forever
        ({"retry-after": "1e300"}, MAX_WAIT),
        ({}, None),
        ({"content-type": "application/json"}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    assert wait(headers) == (None if expected is None else pytest.approx(expected))


def test_the_exhausted_limits_reset_is_the_wait() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "41",
        "anthropic-ratelimit-requests-reset": rfc3339(50),
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": rfc3339(7),
    }
    assert wait(headers) == pytest.approx(7.0)


def test_without_an_exhausted_limit_the_latest_reset_is_the_wait() -> None:
    headers = {
        "anthropic-ratelimit-input-tokens-remaining": "120",
        "anthropic-ratelimit-input-tokens-reset": rfc3339(3),
        "anthropic-ratelimit-output-tokens-reset": rfc3339(12.5),
        "anthropic-ratelimit-requests-reset": "not a time",
    }
    assert wait(headers) == pytest.approx(12.5)


def test_retry_after_wins_over_the_resets() -> None:
    headers = {
        "retry-after": "4",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": rfc3339(30),
    }
    assert wait(headers) == 4.0


def test_the_spend_limit_date_wins_over_the_per_minute_resets() -> None:
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": rfc3339(20),
    }
    assert wait(headers, SPENT.format("2026-03-02 at 12:00")) == pytest.approx(86400.0)
    assert wait({}, SPENT.format("2026-13-45 at 99:99")) is None  # no such date: not a crash
    assert wait({"retry-after": "9"}, SPENT.format("2026-03-02 at 12:00")) == 9.0


def test_an_email_message_is_read_as_the_broker_gets_it() -> None:
    msg = Message()
    msg["Retry-After-Ms"] = "250"
    msg["Retry-After-Ms"] = "999"  # the first of two counts, as Message.get returns it
    assert retry_wait(msg, now=T) == pytest.approx(0.25)


def test_the_clock_is_the_default_now() -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    found = retry_wait({"anthropic-ratelimit-tokens-reset": later})
    assert found is not None and 3000 < found <= 3600


# -- properties ------------------------------------------------------------------------------

header_names = st.sampled_from(NAMES).map(lambda n: n.upper() if len(n) % 2 else n) | st.text()


@settings(max_examples=500, deadline=None)
@given(
    headers=st.dictionaries(header_names, st.text(), max_size=8),
    message=st.text() | st.builds(SPENT.format, st.text()),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_any_input_gives_a_finite_non_negative_wait_or_none(
    headers: dict[str, str], message: str, now: float
) -> None:
    found = retry_wait(headers, message, now=now)
    assert found is None or (math.isfinite(found) and 0.0 <= found <= MAX_WAIT)


numberish = st.one_of(
    st.floats().map(repr),
    st.integers().map(str),
    st.from_regex(r"\A\s*[-+]?[0-9_.eE]{1,12}\s*\Z"),
    st.sampled_from(["nan", "-inf", "Infinity", "1e309", "0x10", ""]),
)
dateish = st.one_of(
    times.map(email.utils.format_datetime),
    times.map(datetime.isoformat),
    st.from_regex(r"\A[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{1,5} \d\d:\d\d:\d\d [-+A-Z0-9]{1,5}\Z"),
    st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?([-+]\d\d:?\d\d|Z)?\Z"),
)


@settings(max_examples=500, deadline=None)
@given(
    headers=st.dictionaries(st.sampled_from(NAMES), numberish | dateish, max_size=10),
    day=st.from_regex(r"\A\d{4}-\d\d-\d\d at \d\d:\d\d\Z"),
)
def test_near_miss_values_never_raise(headers: dict[str, str], day: str) -> None:
    found = retry_wait(headers, SPENT.format(day), now=T)
    assert found is None or (math.isfinite(found) and 0.0 <= found <= MAX_WAIT)


@settings(max_examples=300, deadline=None)
@given(seconds=offsets, ms=st.booleans())
def test_a_number_of_seconds_is_read_back(seconds: float, ms: bool) -> None:
    headers = {"retry-after-ms": repr(seconds * 1000)} if ms else {"retry-after": repr(seconds)}
    assert wait(headers) == pytest.approx(max(seconds, 0.0), abs=1e-6)


@settings(max_examples=300, deadline=None)
@given(seconds=st.integers(min_value=-86400, max_value=10**8))
def test_an_http_date_is_read_back(seconds: int) -> None:
    headers = {"retry-after": email.utils.format_datetime(NOW + timedelta(seconds=seconds))}
    assert wait(headers) == pytest.approx(max(seconds, 0))


@settings(max_examples=300, deadline=None)
@given(
    limits=st.dictionaries(
        st.sampled_from(LIMITS),
        st.tuples(offsets, st.sampled_from([None, "0", "00", "1", "250"])),
        min_size=1,
    )
)
def test_the_reset_chosen_is_the_exhausted_limits_else_the_latest(
    limits: dict[str, tuple[float, str | None]],
) -> None:
    headers: dict[str, str] = {}
    for limit, (seconds, remaining) in limits.items():
        headers[f"anthropic-ratelimit-{limit}-reset"] = rfc3339(seconds)
        if remaining is not None:
            headers[f"anthropic-ratelimit-{limit}-remaining"] = remaining
    spent = [s for s, left in limits.values() if left is not None and int(left) == 0]
    expected = max(spent or [s for s, _ in limits.values()])
    assert wait(headers) == pytest.approx(max(expected, 0.0), abs=1e-5)


# -- a subscription's usage window, and the SDK executor honouring the reset ------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"anthropic-ratelimit-unified-status": "rejected",
          "anthropic-ratelimit-unified-reset": str(int(T) + 7)}, 7.0),
        ({"anthropic-ratelimit-unified-status": "rejected",
          "anthropic-ratelimit-unified-reset": str(int(T) + 3600),
          "anthropic-ratelimit-requests-remaining": "10",
          "anthropic-ratelimit-requests-reset": rfc3339(30)}, 3600.0),  # the spent one
        ({"anthropic-ratelimit-unified-reset": "nan"}, None),
    ],
)
def test_the_unified_reset_is_epoch_seconds(headers: dict[str, str],
                                            expected: float | None) -> None:
    assert wait(headers) == expected


def test_the_sdk_executor_pauses_for_the_reset_it_was_given(tmp_path: Path) -> None:
    """The claude executor's 429 with only a reset 7 s away pauses 7 s, not its 60 s default."""
    from cluster.agent.executors.base import Budget, ExecutionRequest, RateLimited
    from cluster.agent.executors.claude import ClaudeExecutor
    from cluster.secret import Secret
    from tests.fakes.anthropic_api import DEFAULT_KEY, FakeAnthropic

    with FakeAnthropic() as api:
        reset = (datetime.now(UTC) + timedelta(seconds=7)).isoformat()
        api.reply_error(429, "rate_limit_error", "Slow down.", {
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": reset})
        api.usage_limited(int(datetime.now(UTC).timestamp()) + 7)
        executor = ClaudeExecutor(Secret(DEFAULT_KEY), base_url=api.url, default_backoff=60.0)
        for _ in range(2):
            request = ExecutionRequest(task_id="t", workspace=tmp_path, prompt="p",
                                       specialty="backend", budget=Budget(), timeout=30.0,
                                       log_path=tmp_path / "t.log", env={})
            with pytest.raises(RateLimited) as caught:
                executor.run(request)
            assert 0.0 < caught.value.retry_after <= 7.0, caught.value
