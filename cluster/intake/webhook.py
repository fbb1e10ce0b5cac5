"""``claude-cluster webhook serve``: signed GitHub ``issues`` deliveries become tasks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cluster.agent.forge import ForgeError
from cluster.errors import ClusterError
from cluster.intake.deliveries import DELIVERY_ID, DeliveryLog
from cluster.intake.filing import file_issues
from cluster.intake.issues import issue_from_event
from cluster.intake.taskdoc import Policy
from cluster.secret import Secret
from cluster.state.client import StateClient

MAX_BODY = 5 * 1024 * 1024
ACTIONS = ("opened", "labeled", "reopened")
Answer = tuple[int, dict[str, Any]]


def signature(secret: Secret, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()


@dataclass
class WebhookApp:
    """Judges one delivery at a time (the state client is not shared between threads)."""

    client: StateClient
    policy: Policy
    secret: Secret
    deliveries: DeliveryLog
    repos: frozenset[str] = frozenset()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> Answer:
        sent = headers.get("x-hub-signature-256", "")
        if not sent:
            return 401, {"error": "unsigned delivery: X-Hub-Signature-256 missing"}
        if not hmac.compare_digest(signature(self.secret, body).encode(), sent.encode()):
            return 401, {"error": "bad signature: X-Hub-Signature-256 does not match the body"}
        delivery = headers.get("x-github-delivery", "")
        if not DELIVERY_ID.match(delivery):
            return 400, {"error": "X-GitHub-Delivery missing or malformed"}
        with self._lock:
            if delivery in self.deliveries:
                return 200, {"status": "duplicate", "delivery": delivery}
            try:
                payload = json.loads(body)
            except ValueError:
                return 400, {"error": "the body is not JSON"}
            try:
                status, answer = self._event(headers.get("x-github-event", ""), payload)
            except ClusterError as exc:
                return 503, {"error": str(exc)}  # not remembered: GitHub's redelivery may retry
            self.deliveries.add(delivery)
            return status, {**answer, "delivery": delivery}

    def _event(self, event: str, payload: Any) -> Answer:
        if event == "ping":
            return 200, {"status": "pong"}
        if event != "issues" or not isinstance(payload, dict):
            return 200, {"status": "ignored", "reason": f"event {event!r} is not handled"}
        action = payload.get("action")
        try:
            issue = issue_from_event(payload)
        except ForgeError as exc:
            return 400, {"error": str(exc)}
        if action not in ACTIONS or self.policy.label not in issue.labels:
            return 200, {"status": "ignored",
                         "reason": f"{action!r} of an issue without label {self.policy.label!r}"}
        if action == "labeled" and (payload.get("label") or {}).get("name") != self.policy.label:
            return 200, {"status": "ignored", "reason": "another label was added"}
        if self.repos and issue.repo.lower() not in self.repos:
            return 200, {"status": "ignored", "reason": f"{issue.repo} is not served here"}
        filed = file_issues(self.client, [issue], self.policy)
        if filed.created:
            return 202, {"status": "created", "tasks": filed.created, "commit": filed.commit}
        if filed.existing:
            return 200, {"status": "exists", "tasks": filed.existing}
        return 200, {"status": "skipped", "reason": "; ".join(filed.skipped)}


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: WebhookApp, bind: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((bind, port), _Handler)
        self.app = app

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebhookServer

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": f"body larger than {MAX_BODY} bytes"})
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._answer(*self.server.app.handle(headers, body))

    def do_GET(self) -> None:
        self._answer(405, {"error": "GitHub delivers webhooks with POST"})

    def _answer(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # answers are JSON; the CLI reports what was filed
