"""Polling with a deadline that fails loudly, and the sshd banner probe."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from cluster.errors import ClusterError
from cluster.testhosts.model import LOOPBACK

Check = Callable[[], tuple[bool, str]]


class NotReady(ClusterError):
    """A host did not reach the awaited state before its deadline."""


def poll(check: Check, *, what: str, timeout: float, interval: float = 0.2) -> str:
    """Call ``check`` until it reports done; return its detail, or raise with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        done, detail = check()
        if done:
            return detail
        if time.monotonic() >= deadline:
            raise NotReady(f"{what}: not ready after {timeout:.0f}s (last seen: {detail})")
        time.sleep(interval)


def ssh_banner(port: int, host: str = LOOPBACK, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether an sshd greets on host:port (docker's proxy accepts before sshd listens)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            greeting = sock.recv(64)
    except OSError as exc:
        return False, f"{host}:{port}: {exc.strerror or exc}"
    if greeting.startswith(b"SSH-"):
        return True, greeting.decode(errors="replace").strip()
    return False, f"{host}:{port}: no SSH banner (got {greeting[:20]!r})"
