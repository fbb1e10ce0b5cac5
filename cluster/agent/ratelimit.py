"""How long a rate-limited model API asked to wait: read from its headers or its error message."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import Message

# Ten years: a wait beyond it is a broken or hostile header, and the clamp keeps ``now + wait``
# within what a datetime can hold wherever the pause is recorded.
MAX_WAIT = 10 * 365 * 86400.0
LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")  # anthropic-ratelimit-<limit>-*
# A subscription's usage windows: anthropic-ratelimit-unified-reset is epoch seconds, and
# anthropic-ratelimit-unified-status says "rejected" when the window is spent.
UNIFIED = "unified"
# The API's spend-limit error: "... You will regain access on 2025-07-01 at 00:00 UTC."
_REGAIN = re.compile(r"regain access on (\d{4}-\d{2}-\d{2}) at (\d{2}:\d{2}) UTC")
_ZERO = re.compile(r"\s*0+\s*")


def retry_wait(
    headers: Mapping[str, str] | Message, message: str = "", *, now: float | None = None
) -> float | None:
    """Seconds the server asked to wait, in [0, MAX_WAIT], or None if it did not say.

    The first that reads, in order: ``retry-after-ms``; ``retry-after`` in seconds or as an HTTP
    date; the spend-limit ``message``'s "regain access on DATE at HH:MM UTC" (the per-minute
    limits' resets say nothing about a spent month); the ``anthropic-ratelimit-*-reset`` time of
    the exhausted limit (``-remaining`` 0, or ``-unified-status: rejected`` for a subscription's
    usage window, whose reset is in epoch seconds; the latest if several are), else the latest
    reset.
    Header names are case-insensitive; a value that does not parse, or is not finite, is skipped.
    ``now`` is epoch seconds (default: the clock).
    """
    now = time.time() if now is None else now
    fields: dict[str, str] = {}
    for name, value in headers.items():
        fields.setdefault(str(name).lower(), str(value).strip())  # the first, as Message.get
    readers: tuple[Callable[[], float | None], ...] = (
        lambda: _number(fields.get("retry-after-ms"), 1000.0),
        lambda: _number(fields.get("retry-after"), 1.0),
        lambda: _http_date(fields.get("retry-after"), now),
        lambda: _regain(message, now),
        lambda: _reset(fields, now),
    )
    for read in readers:
        wait = read()
        if wait is not None and math.isfinite(wait):
            return min(max(wait, 0.0), MAX_WAIT)
    return None


def _number(value: str | None, per_second: float) -> float | None:
    try:
        return None if value is None else float(value) / per_second
    except ValueError:
        return None


def _http_date(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _since(when, now)


def _regain(message: str, now: float) -> float | None:
    found = _REGAIN.search(message)
    if found is None:
        return None
    try:
        when = datetime.strptime(f"{found[1]} {found[2]}", "%Y-%m-%d %H:%M")
    except ValueError:  # a month 13, an hour 25
        return None
    return _since(when, now)


def _reset(fields: Mapping[str, str], now: float) -> float | None:
    resets: list[float] = []
    exhausted: list[float] = []
    for limit in (*LIMITS, UNIFIED):
        wait = _when(fields.get(f"anthropic-ratelimit-{limit}-reset"), now)
        if wait is None:
            continue
        resets.append(wait)
        if limit == UNIFIED:
            spent = fields.get(f"anthropic-ratelimit-{limit}-status", "").lower() == "rejected"
        else:
            spent = bool(_ZERO.fullmatch(fields.get(f"anthropic-ratelimit-{limit}-remaining", "")))
        if spent:
            exhausted.append(wait)
    return max(exhausted or resets) if resets else None


def _when(value: str | None, now: float) -> float | None:
    """Seconds until a reset given as RFC 3339 or as epoch seconds."""
    if value is None:
        return None
    try:
        wait = float(value) - now
    except ValueError:
        pass
    else:
        return wait if math.isfinite(wait) else None
    try:
        return _since(datetime.fromisoformat(value), now)
    except ValueError:
        return None


def _since(when: datetime, now: float) -> float | None:
    """Seconds from ``now`` until ``when`` (a time without a zone is UTC, as HTTP's are)."""
    try:
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() - now
    except (OverflowError, ValueError, OSError):  # a date at the edge of what datetime holds
        return None
