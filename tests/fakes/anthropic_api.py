"""A fake Anthropic Messages API: POST /v1/messages answered from a scripted queue, as JSON or as
the event stream the API sends when the request asks for ``"stream": true``."""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from tests.fakes import FakeServer, Request, Response

DEFAULT_KEY = "sk-ant-api03-fake-test-key"
HOLD_TIMEOUT = 10.0  # how long a held stream waits for its test before it fails it
# Content built from the request it answers (e.g. a tool call naming the client's work tree).
Content = list[dict[str, Any]] | Callable[[dict[str, Any]], list[dict[str, Any]]]


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "citations": None}


def tool_use_block(name: str, tool_input: dict[str, Any], tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


class FakeAnthropic(FakeServer):
    """Answers each POST /v1/messages with the next scripted response.

    Script with :meth:`reply`, :meth:`reply_text`, :meth:`reply_tool_use` and the error methods.
    A request with a wrong key gets a 401 without consuming the script; an empty script gives a
    500 api_error. ``requests`` holds what the client sent (headers lower-cased). A scripted
    message asked for with ``"stream": true`` is sent as server-sent events, chunk by chunk.
    """

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._script: deque[Response | Callable[[], Response] | dict[str, Any]] = deque()
        self._script_lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- scripting -------------------------------------------------------------------------

    def reply(
        self,
        content: Content,
        stop_reason: str = "end_turn",
        *,
        input_tokens: int = 10,
        output_tokens: int = 5,
        hold: threading.Event | None = None,
    ) -> Self:
        """Queue an assistant message; its ``model`` echoes the request's. ``content`` may be a
        function of the request's JSON body, called when the request arrives.

        Streamed, the events after ``message_start`` wait for ``hold`` to be set: a test proves
        with it that the client saw the first event while the message was still being written
        (a hold not released within HOLD_TIMEOUT fails the test through ``errors``).
        """
        with self._script_lock:
            self._script.append(
                {
                    "content": content,
                    "stop_reason": stop_reason,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                    "hold": hold,
                }
            )
        return self

    def reply_text(self, text: str, stop_reason: str = "end_turn", **usage: Any) -> Self:
        return self.reply([text_block(text)], stop_reason, **usage)

    def reply_tool_use(
        self, *calls: tuple[str, dict[str, Any]], text: str | None = None, **usage: Any
    ) -> Self:
        """Queue a tool_use turn calling each ``(name, input)``; ids are toolu_fake_N."""
        blocks = [text_block(text)] if text else []
        blocks += [
            tool_use_block(name, args, f"toolu_fake_{next(self._ids)}") for name, args in calls
        ]
        return self.reply(blocks, "tool_use", **usage)

    def reply_raw(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> Self:
        """Queue any response, e.g. a malformed body."""
        merged = {"content-type": "application/json", **(headers or {})}
        with self._script_lock:
            self._script.append(Response(status, body, merged))
        return self

    def reply_error(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> Self:
        body = json.dumps(error_body(error_type, message, self._request_id())).encode()
        return self.reply_raw(status, body, headers)

    def rate_limited(self, retry_after: str = "30", message: str | None = None) -> Self:
        """Queue a 429 as the API sends it, with ``retry-after`` in seconds."""
        headers = {
            "retry-after": retry_after,
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
        }
        text = message or "This request would exceed the rate limit for your organization."
        return self.reply_error(429, "rate_limit_error", text, headers)

    def rate_limited_until_reset(self, seconds: float, message: str) -> Self:
        """Queue a 429 that gives no ``retry-after``, only the spent limit's reset time (``seconds``
        after the request arrives), and says (``x-should-retry: false``) that retrying at once
        will not help."""

        def answer() -> Response:
            reset = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
            headers = {
                "content-type": "application/json",
                "x-should-retry": "false",
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset.replace("+00:00", "Z"),
            }
            body = error_body("rate_limit_error", message, self._request_id())
            return Response(429, json.dumps(body).encode(), headers)

        with self._script_lock:
            self._script.append(answer)
        return self

    def usage_limited(self, reset_epoch: int, window: str = "five_hour") -> Self:
        """Queue a subscription's usage-window 429: ``anthropic-ratelimit-unified-*`` headers
        with the window ``rejected`` and its reset in epoch seconds."""
        short = {"five_hour": "5h", "seven_day": "7d"}[window]
        headers = {
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset_epoch),
            "anthropic-ratelimit-unified-representative-claim": window,
            f"anthropic-ratelimit-unified-{short}-status": "rejected",
            f"anthropic-ratelimit-unified-{short}-reset": str(reset_epoch),
            f"anthropic-ratelimit-unified-{short}-utilization": "1.0",
        }
        text = "This request would exceed your account's rate limit. Please try again later."
        return self.reply_error(429, "rate_limit_error", text, headers)

    def overloaded(self) -> Self:
        return self.reply_error(529, "overloaded_error", "Overloaded")

    def malformed(self, body: bytes = b'{"id": "msg_01", "type": "mess') -> Self:
        return self.reply_raw(200, body)

    def unauthorized(self) -> Self:
        return self.reply_error(401, "authentication_error", "invalid x-api-key")

    @property
    def pending(self) -> int:
        with self._script_lock:
            return len(self._script)

    def message_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of every POST /v1/messages, in order."""
        return [r.json() for r in self.requests if r.path == "/v1/messages"]

    def prompt_texts(self, index: int = 0) -> list[str]:
        """The text blocks (or the text) of the first user message of request ``index``: where a
        client's prompt is (the CLI adds blocks of its own beside it)."""
        content = self.message_requests()[index]["messages"][0]["content"]
        if isinstance(content, str):
            return [content]
        return [b["text"] for b in content if b.get("type") == "text"]

    def tool_results(self) -> dict[str, dict[str, Any]]:
        """Every ``tool_result`` block the client sent, by ``tool_use_id``, the content as text."""
        found: dict[str, dict[str, Any]] = {}
        for body in self.message_requests():
            for message in body["messages"]:
                content = message.get("content")
                for block in content if isinstance(content, list) else []:
                    if block.get("type") != "tool_result":
                        continue
                    inner = block.get("content")
                    text = inner if isinstance(inner, str) else "".join(
                        part.get("text", "") for part in inner or [] if isinstance(part, dict))
                    found[block["tool_use_id"]] = {**block, "content": text}
        return found

    def tool_uses(self) -> list[dict[str, Any]]:
        """Every ``tool_use`` block this stand-in sent (as the client echoed it), in order."""
        seen: dict[str, dict[str, Any]] = {}
        for body in self.message_requests():
            for message in body["messages"]:
                content = message.get("content")
                for block in content if isinstance(content, list) else []:
                    if block.get("type") == "tool_use":
                        seen.setdefault(block["id"], block)
        return list(seen.values())

    # -- serving ---------------------------------------------------------------------------

    def _request_id(self) -> str:
        return f"req_fake{next(self._ids):06d}"

    def _error(self, status: int, error_type: str, message: str) -> Response:
        return Response.json(status, error_body(error_type, message, self._request_id()))

    def _authorized(self, request: Request) -> bool:
        # The installed SDK sends an API key as a Bearer token; the public API documents x-api-key.
        bearer = request.headers.get("authorization", "")
        return self.api_key in (request.headers.get("x-api-key"), bearer.removeprefix("Bearer "))

    def handle(self, request: Request) -> Response:
        if (request.method, request.path) != ("POST", "/v1/messages"):
            return self._error(
                404, "not_found_error", f"Not found: {request.method} {request.path}"
            )
        if not self._authorized(request):
            return self._error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in request.headers:
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        try:
            body = request.json()
        except ValueError:
            return self._error(400, "invalid_request_error", "request body is not valid JSON")
        problem = _check_body(body)
        if problem:
            return self._error(400, "invalid_request_error", problem)
        with self._script_lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            return self._error(500, "api_error", "fake: no scripted response left")
        if isinstance(scripted, Response):
            return scripted
        if callable(scripted):
            return scripted()
        content = scripted["content"]
        if callable(content):
            content = content(body)
        message = {
            "id": f"msg_fake{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": scripted["stop_reason"],
            "stop_sequence": None,
            "usage": {
                **scripted["usage"],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }
        if body.get("stream") is True:
            headers = {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": self._request_id(),
            }
            return Response(200, headers=headers, chunks=self._events(message, scripted["hold"]))
        return Response.json(200, message, {"request-id": self._request_id()})

    def _events(self, message: dict[str, Any], hold: threading.Event | None) -> Iterator[bytes]:
        """The message as the API streams it: one chunk per event."""
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {**usage, "output_tokens": 1}
        yield _event("message_start", {"message": start})
        if hold is not None and not hold.wait(HOLD_TIMEOUT):
            with self._lock:
                self.errors.append("a held stream was not released: the client never saw it")
        yield _event("ping", {})
        for index, block in enumerate(message["content"]):
            yield from _block_events(index, block)
        yield _event(
            "message_delta",
            {
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        yield _event("message_stop", {})


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _block_events(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    """content_block_start, its deltas (text_delta or input_json_delta) and content_block_stop."""
    if block["type"] == "tool_use":
        yield _event(
            "content_block_start",
            {"index": index, "content_block": {**block, "input": {}}},
        )
        for part in ["", *_pieces(json.dumps(block["input"]))]:
            delta = {"type": "input_json_delta", "partial_json": part}
            yield _event("content_block_delta", {"index": index, "delta": delta})
    else:
        yield _event(
            "content_block_start",
            {"index": index, "content_block": {"type": "text", "text": ""}},
        )
        for part in _pieces(block["text"]):
            delta = {"type": "text_delta", "text": part}
            yield _event("content_block_delta", {"index": index, "delta": delta})
    yield _event("content_block_stop", {"index": index})


def _check_body(body: Any) -> str | None:
    """The 400 message the API would give for this body, or None; covers what clients get wrong."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    for index, (current, following) in enumerate(itertools.pairwise([*messages, None])):
        if current.get("role") != "assistant" or not isinstance(current.get("content"), list):
            continue
        wanted = {b["id"] for b in current["content"] if b.get("type") == "tool_use"}
        given: set[str] = set()
        if following is not None and isinstance(following.get("content"), list):
            given = {
                b.get("tool_use_id") for b in following["content"] if b.get("type") == "tool_result"
            }
        if wanted - given:
            return (
                f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(wanted - given))}. Each `tool_use` block "
                "must have a corresponding `tool_result` block in the next message."
            )
    return None
