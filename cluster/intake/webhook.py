"""``claude-cluster webhook serve``: signed GitHub deliveries become tasks: labelled issues,
and reviews, comments and failed checks on the agents' pull requests (follow-ups)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.agent.forge import ForgeError
from cluster.agent.pulls import Conversations
from cluster.errors import ClusterError
from cluster.httpserve import BoundedHandler, BoundedServer
from cluster.httpserve import Limits as Limits  # re-exported: the CLI and tests import it here
from cluster.intake.deliveries import DELIVERY_ID, DeliveryLog
from cluster.intake.filing import Filed, file_issues
from cluster.intake.followups import FollowUpPolicy
from cluster.intake.issues import issue_from_event, shape_problem
from cluster.intake.poller import file_follow_ups
from cluster.intake.taskdoc import Policy
from cluster.intake.triggers import (
    CHECK_EVENTS,
    EVENTS,
    PayloadError,
    event_triggers,
    parse_event,
)
from cluster.secret import Secret
from cluster.secrets_file import read_secret_line
from cluster.state.client import StateClient

ACTIONS = ("opened", "labeled", "reopened")
LENGTH = re.compile(r"[0-9]{1,15}")
Answer = tuple[int, dict[str, Any]]


def signature(secret: Secret, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()


def read_secret_file(path: Path) -> Secret:
    """The first line of ``path``; refused if group or others may use it."""
    return read_secret_line(path, "webhook secret file")


@dataclass
class WebhookApp:
    """Judges one delivery at a time (the state client is not shared between threads)."""

    client: StateClient
    policy: Policy | None  # labelled issues become tasks (None: issue intake is off)
    secret: Secret
    deliveries: DeliveryLog
    repos: frozenset[str] = frozenset()
    forge: Conversations | None = None  # reads pull requests and permissions (follow-ups)
    follow_ups: FollowUpPolicy | None = None  # None: reviews, comments, checks are ignored
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> Answer:
        sent = headers.get("x-hub-signature-256", "")
        if not sent:
            return 401, {"error": "unsigned delivery: X-Hub-Signature-256 missing"}
        if not hmac.compare_digest(signature(self.secret, body).encode(), sent.encode()):
            return 401, {"error": "bad signature: X-Hub-Signature-256 does not match the body"}
        delivery = headers.get("x-github-delivery", "")
        if not DELIVERY_ID.fullmatch(delivery):
            return 400, {"error": "X-GitHub-Delivery missing or malformed"}
        with self._lock:
            if delivery in self.deliveries:
                return 200, {"status": "duplicate", "delivery": delivery}
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                return 400, {"error": "the body is not JSON (or nests too deeply)"}
            try:
                status, answer = self._event(headers.get("x-github-event", ""), payload)
            except ClusterError as exc:
                return 503, {"error": str(exc)}  # not remembered: GitHub's redelivery may retry
            self.deliveries.add(delivery)
            return status, {**answer, "delivery": delivery}

    def _event(self, event: str, payload: Any) -> Answer:
        if event == "ping":
            return 200, {"status": "pong"}
        if event in EVENTS:
            return self._follow_up(event, payload)
        if event != "issues":
            return 200, {"status": "ignored", "reason": f"event {event!r} is not handled"}
        if self.policy is None:
            return _ignored("issue intake is not enabled here")
        problem = shape_problem(payload)
        if problem is not None:
            return 400, {"error": f"not an issues event payload: {problem}"}
        action = payload.get("action")
        try:
            issue = issue_from_event(payload)
        except ForgeError as exc:
            return 400, {"error": str(exc)}
        if action not in ACTIONS or self.policy.label not in issue.labels:
            return _ignored(f"{action!r} of an issue without label {self.policy.label!r}")
        if action == "labeled" and (payload.get("label") or {}).get("name") != self.policy.label:
            return _ignored("another label was added")
        if self.repos and issue.repo.lower() not in self.repos:
            return _ignored(f"{issue.repo} is not served here")
        return _answer(file_issues(self.client, [issue], self.policy))

    def _follow_up(self, event: str, payload: Any) -> Answer:
        """A review, comment or check on a pull request: a follow-up of an agent's work."""
        policy, forge = self.follow_ups, self.forge
        if policy is None or forge is None:
            return _ignored("pull-request follow-ups are not enabled here")
        if event in CHECK_EVENTS and not policy.checks:
            return _ignored("failed checks do not trigger follow-ups here")
        try:
            parsed = parse_event(event, payload)
        except PayloadError as exc:
            return 400, {"error": f"not a {event} event payload: {exc}", "field": exc.field}
        if isinstance(parsed, str):
            return _ignored(parsed)
        if self.repos and parsed.repo.lower() not in self.repos:
            return _ignored(f"{parsed.repo} is not served here")
        items = event_triggers(forge, parsed, policy)
        if isinstance(items, str):
            return _ignored(items)
        return _answer(file_follow_ups(forge, self.client, items, policy))


def _ignored(reason: str) -> Answer:
    return 200, {"status": "ignored", "reason": reason}


def _answer(filed: Filed) -> Answer:
    if filed.created:
        return 202, {"status": "created", "tasks": filed.created, "commit": filed.commit}
    if filed.existing:
        return 200, {"status": "exists", "tasks": filed.existing}
    return 200, {"status": "skipped", "reason": "; ".join(filed.skipped)}


class WebhookServer(BoundedServer):
    """One thread per connection, at most ``limits.max_connections`` of them at once."""

    def __init__(self, app: WebhookApp, bind: str = "127.0.0.1", port: int = 0,
                 limits: Limits | None = None) -> None:
        self.app = app
        super().__init__((bind, port), _Handler, limits)


class _Handler(BoundedHandler):
    server: WebhookServer

    def do_POST(self) -> None:
        length = self._length()
        if isinstance(length, tuple):
            self._refuse(*length)
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True  # the client closed before sending all it announced
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            answer = self.server.app.handle(headers, body)
        except Exception as exc:  # the last line: an answer, never a dropped connection
            answer = 500, {"error": f"internal error ({type(exc).__name__})"}
        self._answer(*answer)

    def _length(self) -> int | tuple[int, str]:
        """The announced body length, or the status and reason to refuse the request with."""
        limits = self.server.limits
        values = {value.strip() for value in self.headers.get_all("content-length") or ()}
        if self.headers.get("transfer-encoding") is not None:
            return 411, "Transfer-Encoding is not accepted; send Content-Length"
        if not values:
            return 411, "Content-Length is required"
        value = values.pop()
        if values or not LENGTH.fullmatch(value):
            return 400, "Content-Length must be one non-negative integer"
        if int(value) > limits.max_body:
            return 413, f"body larger than {limits.max_body} bytes"
        return int(value)

    def _refuse(self, status: int, error: str) -> None:
        self.close_connection = True  # the body is left unread: the stream cannot be resynced
        self._answer(status, {"error": error})

    def do_GET(self) -> None:
        self._answer(405, {"error": "GitHub delivers webhooks with POST"})

    def _answer(self, status: int, data: dict[str, Any]) -> None:
        self.send_json(status, data)
