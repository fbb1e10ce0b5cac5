"""SSH connections for fleet-wide reads: handshakes capped per target, retried with jitter."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from cluster.errors import ConfigError, HostError, HostKeyMismatch
from cluster.inventory.model import HostSpec
from cluster.transport import connect

# Failures that no retry can change: a wrong key, a refused login, an unknown host key.
PERMANENT = ("authentication failed", "unknown host key", "name not resolved")
Connector = Callable[..., Any]


class HandshakeLimiter:
    """At most ``per_target`` handshakes at once to one machine (sshd's MaxStartups).

    The target is the hostname: sshd throttles unauthenticated connections per daemon and
    firewalls per address, so hosts sharing an address share the budget. Thread-safe.
    """

    def __init__(self, per_target: int = 8) -> None:
        self.per_target = per_target
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def slot(self, target: str) -> threading.BoundedSemaphore:
        with self._lock:
            if target not in self._slots:
                self._slots[target] = threading.BoundedSemaphore(self.per_target)
            return self._slots[target]


def open_connection(
    spec: HostSpec,
    limiter: HandshakeLimiter,
    timeout: float = 10.0,
    attempts: int = 3,
    connector: Connector = connect,
    pause: Callable[[float], None] = time.sleep,
) -> Any:
    """A connection to ``spec``; transient failures (dropped, timed out) are retried after a
    jittered backoff so that a burst throttled by sshd does not read as a down host."""
    if spec.ssh_key_file is None or spec.known_hosts_file is None:
        raise ConfigError(f"host {spec.name!r}: needs data ssh_key_file and known_hosts_file")
    key, known = spec.ssh_key_file.expanduser(), spec.known_hosts_file.expanduser()
    for attempt in range(1, attempts + 1):
        try:
            with limiter.slot(spec.hostname):
                return connector(spec.hostname, spec.port, spec.username, key, known,
                                 timeout=timeout)  # fmt: skip
        except HostKeyMismatch as exc:
            raise HostKeyMismatch(spec.name, _reason(exc)) from exc
        except HostError as exc:
            reason = _reason(exc)
            if attempt == attempts or reason.startswith(PERMANENT):
                raise HostError(spec.name, reason) from exc
        pause(random.uniform(0.1, 0.4) * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def _reason(exc: HostError) -> str:
    return str(exc).removeprefix(f"{exc.host}: ")
