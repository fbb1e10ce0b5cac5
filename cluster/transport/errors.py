"""Translates paramiko, socket and invoke errors into HostError once, with a clear reason."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
from invoke.exceptions import CommandTimedOut

from cluster.errors import HostError, HostKeyMismatch
from cluster.transport.hostkeys import UnknownHostKey


@contextmanager
def translated(host: str, known_hosts: Path | None = None) -> Iterator[None]:
    """Re-raise SSH and network failures inside the block as HostError naming ``host``."""
    try:
        yield
    except HostError:
        raise
    except paramiko.BadHostKeyException as exc:
        raise HostKeyMismatch(
            host,
            f"host key changed: {known_hosts or 'known_hosts'} has "
            f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}, the host offered "
            f"{exc.key.get_name()} {exc.key.fingerprint}",
        ) from exc
    except UnknownHostKey as exc:
        raise HostError(
            host,
            f"unknown host key: {exc.key_type} {exc.fingerprint} is not in "
            f"{known_hosts or 'known_hosts'} (refused; accept_new trusts it on first use)",
        ) from exc
    except paramiko.AuthenticationException as exc:
        raise HostError(host, f"authentication failed: {exc}") from exc
    except CommandTimedOut as exc:
        raise HostError(host, f"timed out: command still running after {exc.timeout}s") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostError(host, reason(exc)) from exc


def reason(exc: BaseException) -> str:
    """A short human reason for a connection-level failure."""
    if _is_timeout(exc):
        return "timed out"
    if str(exc) == "No existing session":
        # paramiko's handshake wait gave up (its timeout) before the transport failed.
        return "timed out (no SSH handshake within the timeout)"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(error, "errno", None) for error in exc.errors.values()}
        return "connection refused" if codes == {errno.ECONNREFUSED} else f"unreachable: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved: {exc}"
    if isinstance(exc, EOFError) or isinstance(exc.__cause__, EOFError):
        return "connection closed by the remote end (sshd not ready or dropping connections)"
    if isinstance(exc, paramiko.SSHException):
        return f"ssh error: {exc}"
    return f"network error: {exc}"


def _is_timeout(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, TimeoutError | socket.timeout):
            return True
        if "timed out" in str(exc) or "timeout" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False
