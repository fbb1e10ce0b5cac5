"""Model prices in USD per million tokens: the one table behind every dollar budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cluster.errors import ConfigError


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


# List prices when this was written; settings override them, since a dollar limit is only as
# right as this table.
DEFAULT_PRICES: Mapping[str, Price] = {
    "claude-opus-4-6": Price(5.0, 25.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-sonnet-4-6": Price(3.0, 15.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.8, 4.0),
}


def price_for(model: str, prices: Mapping[str, Price]) -> Price:
    """The price of ``model``: an exact entry, else the longest prefix (dated model ids)."""
    if model in prices:
        return prices[model]
    prefixes = [name for name in prices if model.startswith(name)]
    if not prefixes:
        raise ConfigError(f"no price for model {model!r}: add it to the executor's price table")
    return prices[max(prefixes, key=len)]
