"""Who may read the dashboard: anyone on loopback; with a token anywhere else.

The token comes as ``Authorization: Bearer <token>`` (scripts, Prometheus), as the password of
HTTP Basic (a browser asks for it once, answering the 401's ``WWW-Authenticate``, and sends it
with every request of the page, the event stream too), or in the ``claude_cluster_token``
cookie. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from cluster.errors import ConfigError
from cluster.secret import Secret
from cluster.secrets_file import read_secret_line

TOKEN_VARIABLE = "CLUSTER_SERVE_TOKEN"  # noqa: S105 - the variable's name, not a token
COOKIE = "claude_cluster_token"
CHALLENGE = 'Basic realm="claude-cluster", charset="UTF-8"'
MIN_TOKEN = 16  # characters: a token short enough to guess is refused at start
OPEN_PATHS = frozenset({"/health"})


def is_loopback(bind: str) -> bool:
    """Does binding ``bind`` keep the server on this machine (127.0.0.0/8, ::1, localhost)?"""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: it needs a token


def read_token_file(path: Path) -> Secret:
    """The first line of ``path``; refused if group or others may use it."""
    return read_secret_line(path, "serve token file")


def find_token(token_file: Path | None, environ: Mapping[str, str] | None = None) -> Secret | None:
    """The token of ``--token-file``, else of ``$CLUSTER_SERVE_TOKEN``, else None."""
    if token_file is not None:
        token = read_token_file(token_file)
    else:
        value = (os.environ if environ is None else environ).get(TOKEN_VARIABLE, "").strip()
        if not value:
            return None
        token = Secret(value)
    if len(token.reveal()) < MIN_TOKEN:
        raise ConfigError(f"the serve token must be at least {MIN_TOKEN} characters")
    return token


def require_token(bind: str, token: Secret | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if token is None and not is_loopback(bind):
        raise ConfigError(
            f"--bind {bind} is not a loopback address: serving it needs a token "
            f"(set {TOKEN_VARIABLE} or give --token-file, a file of mode 0600)")


@dataclass(frozen=True)
class Gate:
    """Judges one request's credentials (see the module's docstring)."""

    token: Secret | None

    def allows(self, path: str, headers: Mapping[str, str]) -> bool:
        if self.token is None or path in OPEN_PATHS:
            return True
        return any(self.matches(given) for given in _offered(headers))

    def matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.reveal().encode())


def _offered(headers: Mapping[str, str]) -> list[str]:
    """The tokens a request offers (lower-case header names)."""
    out = []
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        out.append(value.strip())
    elif scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if ":" in decoded:
            out.append(decoded.partition(":")[2])  # the user name is anything
    raw = headers.get("cookie", "")
    if raw:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return out
        if COOKIE in jar:
            out.append(jar[COOKIE].value)
    return out
