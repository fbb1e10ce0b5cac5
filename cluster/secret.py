"""A string type for secrets that prints as *** in logs, errors, reprs and diffs."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"


class Secret:
    """Holds a secret value; only :meth:`reveal` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def mask(text: str, secrets: Iterable[Secret | str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ***."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if len(value) >= 4:
            text = text.replace(value, MASK)
    return text


def shown_url(url: str) -> str:
    """A URL fit for messages: any user:password part removed."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url
