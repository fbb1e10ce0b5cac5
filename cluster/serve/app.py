"""Routing: one request in, one answer out, from the fleet's current view (no sockets here)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cluster import __version__
from cluster.secret import shown_url
from cluster.serve import metrics
from cluster.serve.auth import CHALLENGE, Gate
from cluster.serve.state import Fleet
from cluster.state.ids import is_safe_id
from cluster.state.records import stamp

STATIC = Path(__file__).resolve().parent / "static"
MAX_TARGET = 4096  # characters of path and query; a longer one is 414
MAX_PARAMS = 16
STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(html|js|css|svg|png|ico|json|map)")
BAD_KEY = re.compile(r"bad\.[0-9a-f]{16}")  # the key of a badly named task file (ids.py)
TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
         "css": "text/css; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
         "ico": "image/x-icon", "json": "application/json", "map": "application/json"}
JSON = "application/json"
# The page loads only its own files and talks only to this server (its scripts set styles
# through the CSSOM, which a strict policy allows).
POLICY = ("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
          "form-action 'none'")
EVENTS = "/api/events"


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request line's path and query, as sent
    headers: dict[str, str] = field(default_factory=dict)  # names lower-case


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, message: str, **headers: str) -> Answer:
    return Answer(status, json.dumps({"error": message}).encode(), JSON, headers)


def ok_json(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode())


@dataclass
class App:
    fleet: Fleet
    gate: Gate
    static: Path = STATIC

    def handle(self, request: Request) -> Answer:
        if request.method not in ("GET", "HEAD"):
            return error(405, "read-only: only GET and HEAD", allow="GET, HEAD")
        if len(request.target) > MAX_TARGET:
            return error(414, f"request target longer than {MAX_TARGET} characters")
        parts = urlsplit(request.target)
        path = parts.path
        if not self.gate.allows(path, request.headers):
            return error(401, "a token is required: Authorization: Bearer <token>",
                         **{"www-authenticate": CHALLENGE})
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
        except ValueError:
            return error(400, f"more than {MAX_PARAMS} query parameters")
        return self.route(path, dict(pairs))

    def route(self, path: str, query: dict[str, str]) -> Answer:
        if path == "/health":
            return self.health()
        if path in ("/", "/index.html"):
            return self.asset("index.html")
        if path.startswith("/static/"):
            return self.asset(unquote(path[len("/static/"):]))
        if path == "/metrics":
            view = self.fleet.view()
            if view is None:
                return self._unreadable()
            return Answer(200, view.metrics_text(metrics.render), metrics.CONTENT_TYPE)
        if path.startswith("/api/tasks/"):
            return self.task(unquote(path[len("/api/tasks/"):]))
        api = {"/api/cluster/status", "/api/tasks", "/api/queue/status"}
        if path not in api:
            return error(404, f"no such endpoint: {path[:100]!r}")
        view = self.fleet.view()
        if view is None:
            return self._unreadable()
        if path == "/api/cluster/status":
            return Answer(200, view.cluster_status_json())
        if path == "/api/tasks":
            return Answer(200, view.tasks_json(query))
        return ok_json(view.queue())

    def health(self) -> Answer:
        view = self.fleet.view()
        readable = view is not None and self.fleet.error is None
        state = "ok" if readable else ("degraded" if view is not None else "down")
        body = {"status": state, "version": __version__, "state_repo": {
            "url": shown_url(self.fleet.url), "reachable": readable,
            "main": view.snap.main if view else None,
            "read_at": stamp(view.snap.taken_at) if view else None}}
        if self.fleet.error is not None:
            body["error"] = self.fleet.error
        return ok_json(body, 200 if readable else 503)

    def task(self, key: str) -> Answer:
        if len(key) > 200 or not (is_safe_id(key) or BAD_KEY.fullmatch(key)):
            return error(400, "unsafe task id: expected 1-64 characters of a-z, 0-9, '-' and "
                              "'_', starting with a letter or digit")
        if self.fleet.view() is None:
            return self._unreadable()
        detail = self.fleet.task(key)
        if detail is None:
            return error(404, f"task {key!r} is not in the state repo")
        return Answer(200, json.dumps(detail, default=str).encode())

    def asset(self, name: str) -> Answer:
        """A file directly in the static folder, by a safe name; nothing else."""
        match = STATIC_NAME.fullmatch(name)
        if match is None:
            return error(404, "no such asset")
        path = self.static / name
        try:
            body = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        except OSError:
            body = None
        if body is None:
            return error(404, f"no such asset: {name}")
        headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
        if match.group(1) == "html":
            headers.update({"content-security-policy": POLICY, "x-frame-options": "DENY",
                            "referrer-policy": "no-referrer"})
        return Answer(200, body, TYPES[match.group(1)], headers)

    def _unreadable(self) -> Answer:
        return error(503, f"the state repo cannot be read: {self.fleet.error}",
                     **{"retry-after": "2"})
