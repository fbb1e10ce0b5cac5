"""``claude-cluster serve`` over HTTP: the shared hardening (cluster.httpserve), the routes of
cluster.serve.app, and the event stream, whose clients are bounded on their own."""

from __future__ import annotations

import threading
import time
from typing import Any

from cluster.httpserve import BoundedHandler, BoundedServer, Limits
from cluster.serve.app import EVENTS, App, Request, error

HEARTBEAT_SECONDS = 15.0
MAX_EVENT_CLIENTS = 8  # streams open at once; each holds one of the connection slots too
MIN_WAKE = 0.2  # seconds: a stream looks for a new reading at most this often


class ServeServer(BoundedServer):
    def __init__(self, app: App, bind: str = "127.0.0.1", port: int = 0,
                 limits: Limits | None = None, *, heartbeat: float = HEARTBEAT_SECONDS,
                 max_streams: int = MAX_EVENT_CLIENTS) -> None:
        self.app, self.heartbeat = app, heartbeat
        self.stopping = threading.Event()
        self.streams = threading.BoundedSemaphore(max_streams)
        super().__init__((bind, port), _Handler, limits)

    def shutdown(self) -> None:
        self.stopping.set()  # every stream ends at its next wake-up
        super().shutdown()

    def server_close(self) -> None:
        self.stopping.set()
        super().server_close()


class _Handler(BoundedHandler):
    server: ServeServer

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _other(self) -> None:
        self.send_json(405, {"error": "read-only: only GET and HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, self.path, headers)
        app = self.server.app
        try:
            wants_events = self.path.split("?", 1)[0] == EVENTS and self.command == "GET"
            if wants_events and app.gate.allows(EVENTS, headers):
                self._stream()
                return
            answer = app.handle(request)
        except Exception as exc:  # the last line: an answer, never a dropped connection
            answer = error(500, f"internal error ({type(exc).__name__})")
        self.send_body(answer.status, answer.body, answer.content_type, answer.headers)

    def _stream(self) -> None:
        """``event: status`` at connect and whenever the refs moved; a comment line every
        ``heartbeat`` seconds; ends when the client goes or the server stops."""
        server = self.server
        if not server.streams.acquire(blocking=False):
            answer = error(503, "too many event streams; retry later", **{"retry-after": "5"})
            self.send_body(answer.status, answer.body, answer.content_type, answer.headers)
            return
        self.close_connection = True
        try:
            self.connection.settimeout(server.limits.request_seconds)  # each write bounded
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            self._events()
        except OSError:
            pass  # the client went away
        finally:
            server.streams.release()

    def _events(self) -> None:
        server, fleet = self.server, self.server.app.fleet
        sent = -1
        beat = time.monotonic()
        wake = max(MIN_WAKE, min(fleet.refresh, server.heartbeat))
        while not server.stopping.is_set():
            view = fleet.view()
            if view is not None and view.generation != sent:
                self.wfile.write(b"event: status\ndata: " + view.cluster_status_json() + b"\n\n")
                self.wfile.flush()
                sent, beat = view.generation, time.monotonic()
            elif time.monotonic() - beat >= server.heartbeat:
                self.wfile.write(b": heartbeat\n\n")
                self.wfile.flush()
                beat = time.monotonic()
            server.stopping.wait(wake)

    def log_message(self, format: str, *args: Any) -> None:
        pass
