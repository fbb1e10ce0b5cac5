"""The hardening every HTTP server of the cluster shares (the webhook receiver, ``serve``):
bounded connections, a deadline on each request, and answers that never wait on a client."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 5 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server before it is answered or dropped."""

    max_body: int = MAX_BODY  # bytes; a longer Content-Length is 413, the body left unread
    request_seconds: float = 10.0  # the whole of one request, headers and body, or keep-alive idle
    max_connections: int = 32  # open at once; one more is answered 503 and closed


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most ``limits.max_connections`` of them at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread was started to give the slot back
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def busy(sock: socket.socket) -> None:
    """Answer 503 from the accepting thread: a few bytes, never waiting on the client."""
    body = json.dumps({"error": "too many connections; retry later"}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n")
    try:
        sock.settimeout(0.5)
        sock.sendall(head.encode() + body)
        sock.setblocking(False)
        sock.recv(65536)  # what already arrived, so that closing sends FIN rather than RST
    except OSError:
        pass


class Deadline(io.RawIOBase):
    """The socket's bytes, each read given only what is left of the request's time."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock, self.seconds = sock, seconds
        self.until = time.monotonic() + seconds

    def restart(self) -> None:
        self.until = time.monotonic() + self.seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.until - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class BoundedHandler(BaseHTTPRequestHandler):
    """Reads each request against its deadline; answers JSON; logs nothing (callers report)."""

    protocol_version = "HTTP/1.1"
    server: BoundedServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm holds the
        # second until the client's delayed ACK (40 ms on Linux) for every small answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # the socket's own file would keep it open after shutdown_request
        self.clock = Deadline(self.connection, self.server.limits.request_seconds)
        self.rfile = io.BufferedReader(self.clock)

    def handle_one_request(self) -> None:
        self.clock.restart()  # slow headers, a slow body or an idle keep-alive: all bounded
        try:
            super().handle_one_request()  # it closes the connection on TimeoutError itself
        except OSError:
            self.close_connection = True  # the client went away: nobody to answer

    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        """One whole answer, written with the request's time as its bound."""
        self.connection.settimeout(self.server.limits.request_seconds)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, data: dict[str, Any]) -> None:
        self.send_body(status, json.dumps(data).encode(), "application/json")

    def log_message(self, format: str, *args: Any) -> None:
        pass
