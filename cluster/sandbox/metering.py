"""What a sandbox's model calls cost: usage read from the responses, budgets, capping, prices."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from cluster.agent.executors.base import Budget, LimitName
from cluster.agent.pricing import DEFAULT_PRICES, Price, price_for
from cluster.errors import ConfigError

INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
METER_BOUND = 16 * 1024 * 1024  # a response larger than this is relayed but not metered

Counts = tuple[int, int, float]  # input tokens, output tokens, USD


@dataclass(frozen=True)
class Usage:
    """What one broker (one attempt) forwarded and what it cost, as read from the responses."""

    requests: int = 0
    input_tokens: int = 0  # cache writes and reads included, as the executor counts them
    output_tokens: int = 0
    cost_usd: float = 0.0
    limit_hit: LimitName | None = None  # the budget a refused request found spent
    rate_limited_until: float | None = None  # epoch seconds: the latest wait a 429/529 asked for

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def recounted(self, was: Counts, now: Counts) -> Usage:
        """This usage with one response's counts ``was`` replaced by what it counts ``now``."""
        return replace(
            self,
            input_tokens=self.input_tokens + now[0] - was[0],
            output_tokens=self.output_tokens + now[1] - was[1],
            cost_usd=self.cost_usd + now[2] - was[2],
        )


def default_price(model: str) -> Price:
    return price_for(model, DEFAULT_PRICES)


def known_price(price_of: Callable[[str], Price], model: str | None) -> Price | None:
    """``model``'s price, or None for no model or no price (``price_of`` raising ConfigError)."""
    try:
        return None if model is None else price_of(model)
    except ConfigError:
        return None


def spent(usage: Usage, budget: Budget) -> tuple[LimitName, str] | None:
    """The budget ``usage`` has spent, and how, in words; None while there is some left."""
    if budget.max_tokens is not None and usage.tokens >= budget.max_tokens:
        return "max_tokens", f"{usage.tokens} of {budget.max_tokens} tokens used"
    if budget.max_usd is not None and usage.cost_usd >= budget.max_usd:
        return "max_usd", f"${usage.cost_usd:.4f} of ${budget.max_usd:.4f} spent"
    return None


def max_tokens_cap(request: object, budget: Budget, used: int) -> int | None:
    """What a request's ``max_tokens`` must be cut to, as the claude executor does, so that no
    reply is longer than the token budget left; None if it fits."""
    asked = request.get("max_tokens") if isinstance(request, dict) else None
    if budget.max_tokens is None or not isinstance(asked, int):
        return None
    left = max(1, budget.max_tokens - used)
    return left if asked > left else None


class Meter:
    """Reads the usage out of a Messages API response as it passes by, JSON or event stream."""

    def __init__(self, status: int, content_type: str, length: int | None) -> None:
        self.status = status
        self._stream = content_type.lower().startswith("text/event-stream")
        self._length = length
        self._pending = bytearray()
        self._data: list[bytes] = []
        self._overflow = False
        self._fields: dict[str, int] = {}
        self.model: str | None = None
        self.seen = False  # some usage was read
        self.done = False  # the whole message was read, or all there will be
        self.counted: Counts = (0, 0, 0.0)  # what the broker has added up
        self.logged = False

    @property
    def input_tokens(self) -> int:
        return sum(self._fields.get(name, 0) for name in INPUT_FIELDS)

    @property
    def output_tokens(self) -> int:
        return self._fields.get("output_tokens", 0)

    def feed(self, chunk: bytes) -> None:
        if self._overflow or self.done:
            return
        self._pending += chunk
        if self._stream:
            *lines, rest = self._pending.split(b"\n")
            self._pending = rest
            for line in lines:
                self._line(bytes(line).rstrip(b"\r"))
        elif len(self._pending) == self._length:
            self.finish()  # before the last bytes are relayed
        if len(self._pending) + sum(map(len, self._data)) > METER_BOUND:
            self._overflow = True
            self._pending, self._data = bytearray(), []

    def finish(self) -> None:
        if self.done:
            return
        if self._stream:
            self._line(bytes(self._pending))
            self._line(b"")
        elif not self._overflow:
            self._event(bytes(self._pending))
        self.done = True

    def _line(self, line: bytes) -> None:
        if not line and self._data:
            self._event(b"\n".join(self._data))
            self._data = []
        elif line.startswith(b"data:"):
            self._data.append(line[5:].removeprefix(b" "))

    def _event(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        message = event.get("message") if event.get("type") == "message_start" else event
        if event.get("type") in ("message", "message_start") and isinstance(message, dict):
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._usage(message.get("usage"))
        elif event.get("type") == "message_delta":
            self._usage(event.get("usage"))  # cumulative counts
        elif event.get("type") == "message_stop":
            self.done = True

    def _usage(self, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        for name in (*INPUT_FIELDS, "output_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self._fields[name] = value
                self.seen = True
