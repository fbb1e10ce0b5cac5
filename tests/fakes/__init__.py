"""Stand-in HTTP servers on 127.0.0.1 that speak the real Anthropic and GitHub wire formats."""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server received it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Response:
    """An answer; with ``chunks`` the body is sent chunked, each piece as soon as it is made."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None

    @classmethod
    def json(cls, status: int, data: object, headers: dict[str, str] | None = None) -> Response:
        merged = {"content-type": "application/json", **(headers or {})}
        return cls(status, json.dumps(data).encode(), merged)


class FakeServer:
    """A threaded HTTP server whose subclasses answer in :meth:`handle`; records every request.

    Use it as a context manager: the server listens on 127.0.0.1 and an ephemeral port.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` with no trailing slash."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.app = self
        self._server = server
        # A short poll interval only makes stop() quick; requests are served at once regardless.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=type(self).__name__
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        try:
            return self.handle(request)
        except Exception:
            # A bug in a fake must fail the test loudly, not hang the client.
            trace = traceback.format_exc()
            with self._lock:
                self.errors.append(trace)
            return Response.json(500, {"fake_server_error": trace})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: FakeServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        response = self.server.app._serve(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.chunks is None:
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for chunk in response.chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is FakeServer.requests
