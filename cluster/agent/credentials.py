"""The model API credential as the fleet shares it: its fingerprint, a refused credential, and
the usage-window pause every agent holding the same credential keeps.

A 5-hour or weekly usage window, or an organisation's rate limit, belongs to the credential,
not to the agent that met it: when one agent is told to wait, it publishes ``paused_until`` and
the credential's fingerprint in its heartbeat, and every agent whose heartbeat lists the same
fingerprint stops claiming until then (docs/agent.md, "Credentials").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from cluster.errors import ClusterError
from cluster.secret import Secret
from cluster.state.records import Heartbeat

CredentialKind = Literal["api_key", "oauth"]

# HMAC-SHA256 keyed with this project-specific constant, over the kind and the value: every agent
# of every fleet computes the same fingerprint for the same credential without sharing anything
# but the credential, and the fingerprint matches no plain digest of the value (such as the
# SHA-256 a leak index keeps). The values are long random tokens (an API key or a `setup-token`
# OAuth token, 100+ characters), so the hash cannot be inverted by guessing; 128 bits are
# published, enough that two credentials never collide.
FINGERPRINT_KEY = b"claude-code-cluster/credential-fingerprint/v1"
FINGERPRINT_PREFIX = "hmac-sha256:"

# The longest pause an agent keeps or adopts: a weekly window plus a day. A wait beyond it is a
# broken or hostile header (ratelimit.MAX_WAIT allows ten years); the agent then simply tries
# again, meets the limit again if it is still there, and pauses again without burning an attempt.
MAX_PAUSE = 8 * 86400.0


def fingerprint(kind: CredentialKind, value: Secret) -> str:
    """``hmac-sha256:<32 hex digits>``: stable, one-way, different for different credentials."""
    message = kind.encode() + b"\0" + value.reveal().encode("utf-8")
    digest = hmac.new(FINGERPRINT_KEY, message, hashlib.sha256).hexdigest()
    return FINGERPRINT_PREFIX + digest[:32]


class CredentialRejected(ClusterError):
    """The model API refused the credential itself (401 ``authentication_error``: expired,
    revoked, mistyped). Not the task's fault: the attempt is released uncounted and the agent
    stops claiming until it is restarted with a working credential."""


@dataclass(frozen=True)
class Pause:
    """A claiming pause: until when (epoch seconds on the clock of the agent that met the limit),
    for which credential (None: this agent's alone), who met the limit, and why."""

    until: float
    credential: str | None
    by: str
    reason: str


def capped(until: float, since: float) -> float:
    """``until`` no later than MAX_PAUSE after ``since``."""
    return min(until, since + MAX_PAUSE)


def shared_pause(agents: Iterable[Heartbeat], me: str, mine: Collection[str],
                 now: float, skew: float) -> Pause | None:
    """The latest pause another agent published for a credential in ``mine`` that still holds
    at ``now``, allowing ``skew`` seconds for the publisher's clock being ahead of ours.

    A heartbeat counts whatever its agent's state (a stopped or dead agent's window is still the
    credential's), but its pause is capped at MAX_PAUSE after its ``last_seen``, so that no
    heartbeat left behind pauses the fleet for longer. The pause returned is as published (its
    ``until`` without ``skew``): republished by the agents that adopt it, it never grows.
    """
    best: Pause | None = None
    for beat in agents:
        if beat.id == me or beat.paused_for is None or beat.paused_for not in mine:
            continue
        if beat.paused_until is None:
            continue
        until = capped(beat.paused_until, beat.last_seen)
        if until + skew <= now or (best is not None and until <= best.until):
            continue
        best = Pause(until, beat.paused_for, beat.paused_by or beat.id,
                     beat.reason or "usage limit of the shared credential")
    return best


__all__ = ["FINGERPRINT_KEY", "MAX_PAUSE", "CredentialRejected", "Pause", "capped",
           "fingerprint", "shared_pause"]
