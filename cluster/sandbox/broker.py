"""The credential broker: a sandbox's only way out, adding the real key and keeping the budget."""

from __future__ import annotations

import hmac
import http.client
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

from cluster.agent.executors.base import Budget
from cluster.agent.pricing import Price
from cluster.agent.ratelimit import retry_wait
from cluster.errors import ClusterError, ConfigError
from cluster.sandbox import wire
from cluster.sandbox.metering import Meter, Usage, default_price, known_price, max_tokens_cap, spent
from cluster.sandbox.server import Server
from cluster.secret import Secret, mask

__all__ = ["OAUTH_BETA", "Broker", "Call", "Credential", "Limits", "Usage"]

OAUTH_BETA = "oauth-2025-04-20"  # the API takes an OAuth bearer token only with this beta
_URL_CHARS = r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*"
_API_TARGET = re.compile(rf"(/v1/{_URL_CHARS})(\?[?{_URL_CHARS[1:-2]}]*)?")
# POST only where the response carries its usage (or costs nothing): a batch, say, would spend
# the operator's money where the broker cannot count it.
_POST_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
_NOT_FORWARDED = (
    "claude-cluster: only GET under /v1/ and POST to /v1/messages and /v1/messages/count_tokens "
    "are forwarded"
)


@dataclass(frozen=True)
class Credential:
    """The real secret: an API key (sent as ``x-api-key``) or an OAuth token (a Bearer token)."""

    kind: Literal["api_key", "oauth"]
    value: Secret

    def environment(self) -> dict[str, str]:
        """How the Claude Code CLI is given it directly (only with the sandbox off)."""
        name = "ANTHROPIC_API_KEY" if self.kind == "api_key" else "CLAUDE_CODE_OAUTH_TOKEN"
        return {name: self.value.reveal()}


@dataclass(frozen=True)
class Limits:
    """What one client, hostile code by assumption, may take from the broker."""

    max_body: int = 32 * 1024 * 1024
    max_connections: int = 64
    idle_timeout: float = 60.0  # a client silent this long mid-request is dropped
    upstream_timeout: float = 600.0  # one read from upstream: a long reply that is not streamed
    tunnel_idle: float = 300.0  # a CONNECT tunnel with no byte either way


@dataclass(frozen=True)
class Call:
    """A request the broker agreed to forward."""

    body: bytes
    model: str | None  # the model a POST /v1/messages asks for
    metered: bool


class Broker:
    """Serves the Messages API to a sandbox on a unix socket: checks the placeholder key, adds the
    real credential, counts tokens and dollars from the responses and refuses to forward once the
    budget is spent; tunnels CONNECT only to ``allow_hosts``.

    ``credential`` None: no model API for this sandbox (the broker is its egress proxy only).
    ``price_for`` gives a model's price or raises ConfigError (no price: no dollar budget kept).
    """

    def __init__(
        self,
        upstream: str,
        credential: Credential | None,
        budget: Budget,
        *,
        price_for: Callable[[str], Price] = default_price,
        allow_hosts: Sequence[str] = (),
        log: Callable[[str], None] = lambda line: None,
        limits: Limits = Limits(),
    ) -> None:
        self.upstream = urlsplit(upstream)
        if self.upstream.scheme not in ("http", "https") or not self.upstream.hostname:
            raise ConfigError(f"broker upstream {upstream!r}: expected an http(s):// URL")
        self._credential = credential
        self._budget = budget
        self._price_for = price_for
        self.allow_hosts = frozenset(entry.lower() for entry in allow_hosts)
        self._log = log
        self.limits = limits
        # Worth nothing outside this broker, and shaped like no token: work that shows it (a
        # model's `env` dump) is not refused by the push's secret scan (agent/secretscan.py).
        self.placeholder_key = f"claude-cluster-placeholder-{secrets.token_hex(32)}"
        self._lock = threading.Lock()
        self._usage = Usage()
        self._refused: str | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._socket_path: Path | None = None

    @property
    def usage(self) -> Usage:
        with self._lock:
            return self._usage

    @property
    def credential_refused(self) -> str | None:
        """Why upstream refused the real credential (a 401: expired, revoked), or None."""
        with self._lock:
            return self._refused

    def start(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (created 0600; only the sandbox should have it mounted)."""
        if self._server is not None:
            raise ClusterError("the broker is already started")
        try:
            server = Server(str(socket_path), self)
        except OSError as exc:
            raise ConfigError(f"broker socket {socket_path}: {exc}") from exc
        socket_path.chmod(0o600)
        self._server, self._socket_path = server, socket_path
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="broker", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, drop every open connection and remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- policy, called by the request handler --------------------------------------------------

    def say(self, line: str) -> None:
        """Log one line: one physical line, bounded, the credential masked out."""
        clean = "".join(c if c.isprintable() else "?" for c in line[:500])
        self._log(mask(clean, [self._credential.value] if self._credential else []))

    def authorized(self, headers: Message) -> bool:
        """Whether every auth header presented is the placeholder, and there is one."""
        given = list(headers.get_all("x-api-key", []))
        for value in headers.get_all("authorization", []):
            scheme, _, token = value.strip().partition(" ")
            given.append(token if scheme.lower() == "bearer" else value)
        wanted = self.placeholder_key.encode()
        return bool(given) and all(
            hmac.compare_digest(value.strip().encode("utf-8", "replace"), wanted) for value in given
        )

    def refused_target(self, method: str, target: str) -> str | None:
        """Why a request line is not forwarded, or None: it must be plain characters with no dot
        segments, and a POST only where the usage can be counted."""
        found = _API_TARGET.fullmatch(target)
        if found is None or method not in ("GET", "HEAD", "POST"):
            return _NOT_FORWARDED
        path = found[1]
        if any(part in (".", "..") for part in unquote(path).split("/")):
            return _NOT_FORWARDED
        return None if method != "POST" or path.rstrip("/") in _POST_PATHS else _NOT_FORWARDED

    def admit(self, method: str, path: str, body: bytes) -> Call | str:
        """The call to forward, or why not (a final error for the client)."""
        if self._credential is None:
            self.say(f"refused {method} {path[:200]}: no model API for this sandbox")
            return "claude-cluster: this sandbox has no access to the model API"
        metered = method == "POST" and path.partition("?")[0].rstrip("/") == "/v1/messages"
        data: Any = None
        if metered:
            try:
                data = json.loads(body)
            except ValueError:
                data = None  # upstream says what is wrong with it
        model = data.get("model") if isinstance(data, dict) else None
        model = model if isinstance(model, str) else None
        with self._lock:
            refusal = self._refusal(metered, model)
            if refusal is not None:
                return refusal
            self._usage = replace(self._usage, requests=self._usage.requests + 1)
            used = self._usage.tokens
        cap = max_tokens_cap(data, self._budget, used)
        if cap is not None:
            self.say(f"max_tokens of the request capped from {data['max_tokens']} to {cap}")
            data["max_tokens"] = cap
            body = json.dumps(data).encode()
        return Call(body, model, metered)

    def _refusal(self, metered: bool, model: str | None) -> str | None:
        found = spent(self._usage, self._budget)
        if found is not None:
            limit, how = found
            self._usage = replace(self._usage, limit_hit=self._usage.limit_hit or limit)
            self.say(f"refused: the {limit} budget is spent ({how})")
            return f"claude-cluster: the task's {limit} budget is spent ({how})"
        if metered and self._budget.max_usd is not None and self._price(model) is None:
            self.say(f"refused: no price for model {model!r}")
            return f"claude-cluster: no price for model {model!r}, so max_usd cannot be kept"
        return None

    def _price(self, model: str | None) -> Price | None:
        return known_price(self._price_for, model)

    def account(self, meter: Meter, call: Call) -> None:
        """Count what ``meter`` read so far; called before the bytes it read go to the client, so
        that the usage is up to date once the client has them."""
        price = self._price(meter.model) or self._price(call.model)
        cost = price.cost(meter.input_tokens, meter.output_tokens) if price else 0.0
        counted = (meter.input_tokens, meter.output_tokens, cost)
        with self._lock:
            was, meter.counted = meter.counted, counted
            usage = self._usage = self._usage.recounted(was, counted)
        if not meter.done or meter.logged:
            return
        meter.logged = True
        if not meter.seen:
            self.say(f"no usage in a {meter.status} response from upstream: nothing counted")
            return
        unpriced = "" if price else " (no price: cost not counted)"
        self.say(
            f"POST /v1/messages {meter.status}: {meter.model or call.model} "
            f"in={meter.input_tokens} out={meter.output_tokens}{unpriced}; "
            f"total {usage.tokens} tokens ${usage.cost_usd:.4f}"
        )

    def rate_limited(self, status: int, headers: Message) -> None:
        """Record the wait a 429 or 529 asked for, so the agent pauses as long."""
        now = time.time()
        wait = retry_wait(headers, now=now)
        with self._lock:
            until = max(self._usage.rate_limited_until or 0.0, now + (wait or 0.0))
            self._usage = replace(self._usage, rate_limited_until=until)
        asked = "no wait given" if wait is None else f"retry after {wait:.0f}s"
        self.say(f"rate limited by upstream ({status}): {asked}")

    def upstream_request(
        self, call: Call, method: str, target: str, incoming: Message
    ) -> http.client.HTTPResponse:
        """Send ``call`` upstream with the real credential; the response, not yet read."""
        parts = self.upstream
        conn = wire.connection(
            parts.scheme, parts.hostname or "", parts.port, self.limits.upstream_timeout
        )
        headers = [*wire.forwarded(incoming, strip_auth=True), ("accept-encoding", "identity")]
        assert self._credential is not None, "no upstream request without a credential"
        secret = self._credential.value.reveal()
        if self._credential.kind == "api_key":
            headers.append(("x-api-key", secret))
        else:
            betas = [
                b.strip() for n, v in headers if n.lower() == "anthropic-beta" for b in v.split(",")
            ]
            headers = [(n, v) for n, v in headers if n.lower() != "anthropic-beta"]
            beta = ",".join(dict.fromkeys(b for b in [*betas, OAUTH_BETA] if b))
            headers += [("authorization", f"Bearer {secret}"), ("anthropic-beta", beta)]
        response = wire.send(conn, method, parts.path.rstrip("/") + target, headers, call.body)
        if response.status == 401:  # the Messages API's authentication_error: the credential
            self._credential_refused()
            # Retrying a refused credential cannot help: the CLI (whose SDK honours this header)
            # gives up at once instead of backing off for minutes, and the agent takes over.
            del response.msg["x-should-retry"]
            response.msg["x-should-retry"] = "false"
        return response

    def _credential_refused(self) -> None:
        what = "API key" if self._credential and self._credential.kind == "api_key" else (
            "OAuth token")
        with self._lock:
            self._refused = (f"the model API refused the {what} (401 authentication_error: "
                             "expired, revoked or mistyped)")
        self.say(f"upstream refused the credential: 401 ({what})")
