"""The broker's HTTP server on a unix socket: bounded requests, relayed replies, egress tunnels."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cluster.sandbox import wire
from cluster.sandbox.metering import Meter

if TYPE_CHECKING:
    from cluster.sandbox.broker import Broker, Call

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[^\r\n\x00]*")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread per connection, at most ``limits.max_connections`` of them open."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, path: str, broker: Broker) -> None:
        self.broker = broker
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(path, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= self.broker.limits.max_connections
            if not full:
                self._open.add(request)
        if not full:
            super().process_request(request, client_address)
            return
        self.broker.say(f"refused a connection: {len(self._open)} already open")
        with contextlib.suppress(OSError):
            request.sendall(b"HTTP/1.1 503 Too many connections\r\nConnection: close\r\n\r\n")
        self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)  # before the close: the slot is free once a client sees it
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._open_lock:
            for request in self._open:
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        self.broker.say(f"connection ended by an error: {type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.broker.limits.idle_timeout)

    @property
    def broker(self) -> Broker:
        return self.server.broker

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the broker logs its own events

    def log_error(self, format: str, *args: Any) -> None:
        self.broker.say("client error: " + format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (431, 414, a bad request line...) as API errors."""
        self.log_error("code %d, message %s", code, message)
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a status line even for what is not HTTP/1.x
        text = message or self.responses.get(code, ("error",))[0]
        self._error(code, "invalid_request_error", f"claude-cluster: {text}", close=True)

    def _error(self, status: int, kind: str, message: str, *, close: bool = False) -> None:
        body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
        self.send_response_only(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        # The broker's own refusals are final: asking again gets the same answer (the Claude
        # Code CLI would otherwise retry a 401 for minutes).
        self.send_header("x-should-retry", "false")
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _sane(self) -> bool:
        """HTTP/1.x with well-formed header names and values; else the connection is closed."""
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(400, "HTTP/1.0 or HTTP/1.1 only")
            return False
        if all(_TOKEN.fullmatch(n) and _VALUE.fullmatch(v) for n, v in self.headers.items()):
            return True
        self._error(400, "invalid_request_error", "claude-cluster: malformed header", close=True)
        return False

    def _body(self) -> bytes | None:
        """The request body within the bound, or None once an error is answered."""
        if "transfer-encoding" in self.headers:
            self._error(
                411, "invalid_request_error", "claude-cluster: send a content-length", close=True
            )
            return None
        lengths = set(self.headers.get_all("content-length", []))
        if len(lengths) > 1 or not all(re.fullmatch(r"[0-9]{1,15}", v) for v in lengths):
            self._error(
                400, "invalid_request_error", "claude-cluster: bad content-length", close=True
            )
            return None
        length = int(lengths.pop()) if lengths else 0
        if length > self.broker.limits.max_body:
            self._error(
                413,
                "request_too_large",
                f"claude-cluster: body over {self.broker.limits.max_body} bytes",
                close=True,
            )
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _serve(self) -> None:
        if not self._sane():
            return
        if not self.path.startswith("/"):
            self._proxy_http(self.path)
            return
        if not self.broker.authorized(self.headers):
            self.broker.say(f"refused {self.command} {self.path[:200]}: not the placeholder key")
            self._error(
                401,
                "authentication_error",
                "claude-cluster: this broker takes only its placeholder key",
                close=True,
            )
            return
        refused = self.broker.refused_target(self.command, self.path)
        if refused is not None:
            self._error(404, "not_found_error", refused, close=True)
            return
        body = self._body()
        if body is None:
            return
        call = self.broker.admit(self.command, self.path, body)
        if isinstance(call, str):
            self._error(400, "invalid_request_error", call)
            return
        try:
            response = self.broker.upstream_request(call, self.command, self.path, self.headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._unreachable(exc)
            return
        if response.status in (429, 529):
            self.broker.rate_limited(response.status, response.msg)
        meter = None
        if call.metered:
            kind = response.getheader("content-type", "")
            meter = Meter(response.status, kind, None if response.chunked else response.length)
        try:
            self._relay(response, meter, call)
        finally:
            response.close()
            if meter is not None:
                meter.finish()  # a relay cut short counts what got through
                self.broker.account(meter, call)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _unreachable(self, exc: BaseException) -> None:
        where = self.broker.upstream.netloc
        self.broker.say(f"upstream {where} unreachable: {type(exc).__name__}: {exc}")
        self._error(
            502,
            "api_error",
            f"claude-cluster: the model API at {where} cannot be reached ({type(exc).__name__})",
        )

    def _relay(
        self, response: http.client.HTTPResponse, meter: Meter | None, call: Call | None
    ) -> None:
        """Relay status, headers and body, each piece as it arrives (streams are not buffered);
        ``meter`` reads and the broker counts each piece before the client gets it."""
        length, chunked = response.length, response.chunked
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in wire.HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD" or response.status in (204, 304) or response.status < 200:
            self.end_headers()
            return
        rechunk = chunked or length is None
        self.send_header(
            *(("transfer-encoding", "chunked") if rechunk else ("content-length", str(length)))
        )
        self.end_headers()
        try:
            while data := response.read1(wire.CHUNK):
                if meter is not None and call is not None:
                    meter.feed(data)
                    self.broker.account(meter, call)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)
        except (OSError, http.client.HTTPException) as exc:
            self.broker.say(f"relay cut: {type(exc).__name__}")
            self.close_connection = True  # the client cannot tell a cut body from a whole one
            return
        if meter is not None and call is not None:
            meter.finish()
            self.broker.account(meter, call)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")

    def _proxy_http(self, target: str) -> None:
        """A plain-HTTP proxy request (absolute URL): forwarded only to an allowed host."""
        parts = urlsplit(target)
        try:
            hostport = f"{parts.hostname}:{parts.port or 80}" if parts.hostname else ""
        except ValueError:  # a port that is not a number
            hostport = ""
        if parts.scheme != "http" or hostport not in self.broker.allow_hosts:
            self.broker.say(f"egress refused to {hostport or target[:200]}")
            self._error(403, "permission_error", "claude-cluster: egress not allowed", close=True)
            return
        body = self._body()
        if body is None:
            return
        self.broker.say(f"egress allowed to {hostport}")
        conn = wire.connection(
            "http", parts.hostname or "", parts.port or 80, self.broker.limits.upstream_timeout
        )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = wire.forwarded(self.headers, strip_auth=False)
        try:
            response = wire.send(conn, self.command, path, headers, body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._error(502, "api_error", f"claude-cluster: {hostport}: {type(exc).__name__}")
            return
        try:
            self._relay(response, None, None)
        finally:
            response.close()

    def do_CONNECT(self) -> None:
        if not self._sane():
            return
        host, _, port = self.path.lower().rpartition(":")
        if self.path.lower() not in self.broker.allow_hosts or not re.fullmatch("[0-9]+", port):
            self.broker.say(f"egress refused to {self.path[:200]}")
            self._error(403, "permission_error", "claude-cluster: egress not allowed", close=True)
            return
        try:
            upstream = socket.create_connection(
                (host.strip("[]"), int(port)), timeout=self.broker.limits.idle_timeout
            )
        except OSError as exc:
            self._error(
                502, "api_error", f"claude-cluster: {self.path}: {exc.strerror}", close=True
            )
            return
        self.broker.say(f"egress allowed to {self.path.lower()}")
        self.close_connection = True
        with upstream:
            self.send_response_only(200, "Connection Established")
            self.end_headers()
            self._tunnel(upstream)

    def _tunnel(self, upstream: socket.socket) -> None:
        """Copy bytes both ways until both sides end or nothing moves for ``tunnel_idle``."""
        client = self.connection
        client.settimeout(0.0)  # what the client sent after its CONNECT is in rfile's buffer
        try:
            early = self.rfile.read1(wire.CHUNK) or b""
        except (BlockingIOError, OSError):
            early = b""
        client.settimeout(self.broker.limits.idle_timeout)
        wire.splice(client, upstream, early, self.broker.limits.tunnel_idle)
