"""The credential broker between the real anthropic SDK (on a unix socket) and the fake API."""

from __future__ import annotations

import contextlib
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from cluster.agent.executors.base import Budget
from cluster.agent.pricing import Price, price_for
from cluster.sandbox.broker import OAUTH_BETA, Broker, Credential, Limits
from cluster.secret import Secret
from tests.fakes import FakeServer, Request, Response
from tests.fakes.anthropic_api import FakeAnthropic
from tests.helpers import poll

MODEL = "claude-sonnet-4-6"
HELLO: list[Any] = [{"role": "user", "content": "hi"}]
DEAR = {MODEL: Price(10.0, 50.0)}


class Tap(httpx2.BaseTransport):
    """The SDK's transport to the broker's socket; keeps every byte of every response it got."""

    def __init__(self, path: Path) -> None:
        self.inner = httpx2.HTTPTransport(uds=str(path))
        self.seen = bytearray()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        for name, value in response.headers.multi_items():
            self.seen += f"{name}: {value}\n".encode()
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=Tee(response.stream, self.seen),
            extensions=response.extensions,
        )


class Tee(httpx2.SyncByteStream):
    def __init__(self, inner: Any, seen: bytearray) -> None:
        self.inner, self.seen = inner, seen

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.seen += chunk
            yield chunk

    def close(self) -> None:
        self.inner.close()


class Running:
    """A started broker in front of the fake API, with what it logged and what clients saw."""

    def __init__(self, api: FakeAnthropic, path: Path, broker: Broker, lines: list[str]) -> None:
        self.api, self.path, self.broker, self.lines = api, path, broker, lines
        self.taps: list[Tap] = []

    def client(self, key: str | None = None) -> anthropic.Anthropic:
        tap = Tap(self.path)
        self.taps.append(tap)
        return anthropic.Anthropic(
            api_key=self.broker.placeholder_key if key is None else key,
            base_url="http://localhost",
            http_client=httpx2.Client(transport=tap),
            max_retries=0,
        )

    def create(self, **kwargs: Any) -> Any:
        kwargs = {"model": MODEL, "max_tokens": 64, "messages": HELLO, **kwargs}
        return self.client().messages.create(**kwargs)

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send ``data`` on a new connection and read until the broker closes it."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)  # a deadline that fails loudly, not a pause
            sock.connect(str(self.path))
            return exchange(sock, data)


def exchange(sock: socket.socket, data: bytes) -> bytes:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)  # the broker may stop reading: what it answered is still to be read
    got = bytearray()
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return bytes(got)


@pytest.fixture
def run(anthropic_api: FakeAnthropic, tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(budget: Budget | None = None, **kwargs: Any) -> Running:
        lines: list[str] = []
        kwargs.setdefault("credential", Credential("api_key", Secret(anthropic_api.api_key)))
        broker = Broker(anthropic_api.url, budget=budget or Budget(), log=lines.append, **kwargs)
        path = tmp_path / f"broker{len(started)}.sock"
        broker.start(path)
        started.append(Running(anthropic_api, path, broker, lines))
        return started[-1]

    yield start
    for running in started:
        running.broker.close()
        assert not running.path.exists()
        for line in running.lines:
            assert anthropic_api.api_key not in line
        for tap in running.taps:
            assert anthropic_api.api_key.encode() not in tap.seen
    placeholders = [running.broker.placeholder_key for running in started]
    for request in anthropic_api.requests:
        assert request.headers.get("x-api-key", anthropic_api.api_key) == anthropic_api.api_key
        assert not any(p in v for p in placeholders for v in request.headers.values())


def test_a_call_carries_the_real_key_upstream_and_is_counted(run: Any) -> None:
    broker = run()
    broker.api.reply_text("hello", input_tokens=120, output_tokens=30)

    message = broker.create(
        extra_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "b1"}
    )

    assert message.content[0].text == "hello"
    sent = broker.api.requests[-1]
    assert sent.headers["x-api-key"] == broker.api.api_key
    assert "authorization" not in sent.headers
    assert (sent.headers["anthropic-version"], sent.headers["anthropic-beta"]) == (
        "2023-06-01",
        "b1",
    )
    assert sent.json()["messages"] == HELLO
    usage = broker.broker.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 120, 30)
    assert usage.cost_usd == pytest.approx(Price(3.0, 15.0).cost(120, 30))
    assert usage.limit_hit is None
    assert any("in=120 out=30" in line for line in broker.lines)


def test_a_stream_is_relayed_as_it_arrives_and_counted(run: Any) -> None:
    broker = run()
    hold = threading.Event()
    broker.api.reply_tool_use(
        ("write_file", {"path": "a.txt", "content": "hi"}),
        text="Writing.",
        input_tokens=200,
        output_tokens=40,
        hold=hold,
    )

    events = iter(broker.create(stream=True, extra_query={"beta": "true"}))
    first = next(events)  # the fake sends the rest only once this test has seen this event
    hold.set()
    rest = list(events)

    assert first.type == "message_start"
    assert [e.type for e in rest][-2:] == ["message_delta", "message_stop"]
    assert broker.api.requests[-1].query == {"beta": ["true"]}
    usage = broker.broker.usage
    assert (usage.input_tokens, usage.output_tokens) == (200, 40)
    assert usage.cost_usd == pytest.approx(Price(3.0, 15.0).cost(200, 40))


def test_the_sdk_stream_helper_builds_the_message_through_the_broker(run: Any) -> None:
    broker = run()
    broker.api.reply_tool_use(("read_file", {"path": "x.py"}), input_tokens=9, output_tokens=4)

    with broker.client().messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        message = stream.get_final_message()

    assert message.content[0].type == "tool_use"
    assert message.content[0].input == {"path": "x.py"}
    assert (broker.broker.usage.input_tokens, broker.broker.usage.output_tokens) == (9, 4)


@pytest.mark.parametrize("key", ["sk-ant-api03-fake-test-key", "sk-ant-broker-guess", ""])
def test_anything_but_the_placeholder_is_401_and_not_forwarded(run: Any, key: str) -> None:
    broker = run()
    broker.api.reply_text("never")

    with pytest.raises(anthropic.AuthenticationError, match="placeholder"):
        broker.client(key=key or "x").messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    missing = broker.raw(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    both = broker.raw(
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nAuthorization: Bearer %s\r\n\r\n"
        % (broker.broker.placeholder_key.encode(), key.encode())
    )

    assert missing.startswith(b"HTTP/1.1 401 ")
    assert b"\r\nx-should-retry: false\r\n" in missing.lower()  # final: clients stop at once
    assert both.startswith(b"HTTP/1.1 401 ")
    assert broker.api.requests == []
    assert broker.broker.usage.requests == 0


def test_an_oauth_token_goes_as_bearer_with_its_beta(anthropic_api: FakeAnthropic, run: Any):
    broker = run(credential=Credential("oauth", Secret(anthropic_api.api_key)))
    anthropic_api.reply_text("ok")

    broker.create(extra_headers={"anthropic-beta": "tools-2024-05-16"})

    sent = anthropic_api.requests[-1].headers
    assert sent["authorization"] == f"Bearer {anthropic_api.api_key}"
    assert "x-api-key" not in sent
    assert sent["anthropic-beta"].split(",") == ["tools-2024-05-16", OAUTH_BETA]


def test_the_max_tokens_budget_spent_mid_run_stops_forwarding(run: Any) -> None:
    broker = run(Budget(max_tokens=1000))
    broker.api.reply_text("one", input_tokens=600, output_tokens=100)
    broker.api.reply_text("two", input_tokens=200, output_tokens=150)
    broker.api.reply_text("never sent")

    broker.create(max_tokens=4096)
    broker.create(max_tokens=4096)
    with pytest.raises(anthropic.BadRequestError) as caught:
        broker.create()
    with pytest.raises(anthropic.BadRequestError):
        broker.create(stream=True)

    first, second = broker.api.message_requests()
    assert (first["max_tokens"], second["max_tokens"]) == (1000, 300)  # capped to what is left
    body: Any = caught.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(
        "claude-cluster: the task's max_tokens budget is spent (1050 of 1000"
    )
    assert broker.api.pending == 1
    usage = broker.broker.usage
    assert (usage.requests, usage.tokens, usage.limit_hit) == (2, 1050, "max_tokens")


def test_the_max_usd_budget_spent_mid_run_stops_forwarding(run: Any) -> None:
    broker = run(Budget(max_usd=0.01), price_for=lambda model: price_for(model, DEAR))
    broker.api.reply_text("cheap", input_tokens=100, output_tokens=10)
    broker.api.reply_text("dear", input_tokens=1000, output_tokens=100)
    broker.api.reply_text("never sent")

    broker.create()
    list(broker.create(stream=True))
    with pytest.raises(anthropic.BadRequestError, match="max_usd budget is spent"):
        broker.create()

    assert broker.api.pending == 1
    usage = broker.broker.usage
    assert usage.cost_usd == pytest.approx(DEAR[MODEL].cost(1100, 110))
    assert usage.limit_hit == "max_usd"


def test_a_model_without_a_price_is_refused_under_a_dollar_budget(run: Any) -> None:
    broker = run(Budget(max_usd=5.0))
    broker.api.reply_text("never sent")

    with pytest.raises(anthropic.BadRequestError, match="no price for model"):
        broker.create(model="claude-unknown-9")

    assert broker.api.requests == []


def test_a_rate_limit_is_relayed_and_recorded(run: Any) -> None:
    broker = run()
    broker.api.rate_limited(retry_after="17")

    before = time.time()
    with pytest.raises(anthropic.RateLimitError) as caught:
        broker.create()
    after = time.time()

    assert caught.value.response.headers["retry-after"] == "17"
    assert caught.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    until = broker.broker.usage.rate_limited_until
    assert until is not None and before + 17 <= until <= after + 17
    assert broker.broker.usage.tokens == 0
    assert any("rate limited by upstream (429): retry after 17s" in line for line in broker.lines)


def test_an_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    lines: list[str] = []
    key = Credential("api_key", Secret("sk-ant-api03-real-secret-value"))
    with Broker(f"http://127.0.0.1:{port}", key, Budget(), log=lines.append) as broker:
        broker.start(tmp_path / "b.sock")
        tap = Tap(tmp_path / "b.sock")
        client = anthropic.Anthropic(
            api_key=broker.placeholder_key,
            base_url="http://localhost",
            http_client=httpx2.Client(transport=tap),
            max_retries=0,
        )
        with pytest.raises(anthropic.InternalServerError, match="cannot be reached") as caught:
            client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
    assert caught.value.status_code == 502
    assert lines and all("real-secret" not in line for line in lines)
    assert b"real-secret" not in tap.seen


class Origin(FakeServer):
    """A plain HTTP server somewhere the sandbox may or may not reach."""

    def handle(self, request: Request) -> Response:
        return Response(200, f"origin saw {request.method} {request.path}".encode())


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as server:
        yield server


def test_connect_tunnels_only_to_an_allowed_host(run: Any, origin: Origin) -> None:
    allowed = origin.url.removeprefix("http://")
    broker = run(allow_hosts=[allowed])

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(broker.path))
        sock.sendall(f"CONNECT {allowed} HTTP/1.1\r\nHost: {allowed}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        answer = exchange(sock, b"GET /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    connect = f"CONNECT {allowed} HTTP/1.1\r\n\r\n".encode()
    eager = broker.raw(connect + b"GET /eager HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    other = broker.raw(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
    api = broker.raw(b"CONNECT %s HTTP/1.1\r\n\r\n" % broker.api.url[7:].encode())

    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"origin saw GET /simple/")
    assert eager.endswith(b"origin saw GET /eager")  # sent before the tunnel was up
    assert other.startswith(b"HTTP/1.1 403 ")
    assert api.startswith(b"HTTP/1.1 403 ")  # not even to the model API: only through the broker
    assert f"egress allowed to {allowed}" in broker.lines
    assert "egress refused to 127.0.0.1:9" in broker.lines


def test_plain_http_proxying_only_to_an_allowed_host(run: Any, origin: Origin) -> None:
    allowed = origin.url.removeprefix("http://")
    broker = run(allow_hosts=[allowed])

    answer = broker.raw(f"GET {origin.url}/pkg?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
    refused = broker.raw(b"GET http://127.0.0.1:9/ HTTP/1.1\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"origin saw GET /pkg")
    assert origin.requests[-1].query == {"x": ["1"]}
    assert refused.startswith(b"HTTP/1.1 403 ")
    assert broker.api.requests == []


def header(broker: Running, extra: str = "", target: str = "/v1/messages") -> bytes:
    key = broker.broker.placeholder_key
    return f"POST {target} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n{extra}".encode()


HOSTILE: dict[str, tuple[Any, bytes]] = {
    "long-header": (lambda b: header(b, "X-Big: " + "a" * 70_000 + "\r\n\r\n"), b"431"),
    "many-headers": (lambda b: header(b, "".join(f"X-{i}: {i}\r\n" for i in range(120))), b"431"),
    "big-body": (lambda b: header(b, "Content-Length: 5000\r\n\r\n") + b"{" * 5000, b"413"),
    "chunked": (lambda b: header(b, "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), b"411"),
    "two-lengths": (lambda b: header(b, "Content-Length: 1\r\nContent-Length: 2\r\n\r\n"), b"400"),
    "bad-length": (lambda b: header(b, "Content-Length: -1\r\n\r\n"), b"400"),
    "folded-header": (lambda b: header(b, "X-A: 1\r\n  folded\r\n\r\n"), b"400"),
    "garbage": (lambda b: b"\x00\xff\xfe garbage \x01\x02\r\n\r\n", b"400"),
    "http-0.9": (lambda b: b"GET /v1/models\r\n\r\n", b"400"),
    "dot-segments": (lambda b: header(b, "\r\n", "/v1/%2e%2e/admin"), b"404"),
    "batches": (lambda b: header(b, "\r\n", "/v1/messages/batches"), b"404"),
    "outside-v1": (lambda b: header(b, "\r\n", "/admin"), b"404"),
}


@pytest.mark.parametrize(("request_bytes", "status"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_request_gets_an_error_and_the_broker_serves_on(
    run: Any, request_bytes: Any, status: bytes
) -> None:
    broker = run(limits=Limits(max_body=4096))
    broker.api.reply_text("still here")

    answer = broker.raw(request_bytes(broker))

    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    assert broker.api.requests == []
    assert broker.create().content[0].text == "still here"


def test_a_body_over_the_bound_from_the_sdk_is_a_413(run: Any) -> None:
    broker = run(limits=Limits(max_body=4096))

    with pytest.raises(anthropic.APIStatusError) as caught:
        broker.create(messages=[{"role": "user", "content": "x" * 5000}])

    assert caught.value.status_code == 413
    assert broker.api.requests == []


@pytest.mark.parametrize("half", [b"POST /v1/mess", b"body"])
def test_a_stalled_client_is_dropped_after_its_timeout_and_others_are_served(
    run: Any, half: bytes
) -> None:
    broker = run(limits=Limits(idle_timeout=0.5, max_connections=2))
    broker.api.reply_text("served meanwhile").reply_text("served after")
    if half == b"body":
        half = header(broker, "Content-Length: 100\r\n\r\n") + b'{"model":'

    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.settimeout(10)  # a deadline that fails loudly if the broker never drops it
        stalled.connect(str(broker.path))
        stalled.sendall(half)
        assert broker.create().content[0].text == "served meanwhile"
        assert stalled.recv(4096) == b""  # closed, with no answer to half a request

    assert broker.create().content[0].text == "served after"
    assert any("timed out" in line for line in broker.lines)


def test_connections_over_the_bound_are_closed_and_the_slot_comes_back(run: Any) -> None:
    broker = run(limits=Limits(idle_timeout=0.5, max_connections=1))
    broker.api.reply_text("served after")

    with socket.socket(socket.AF_UNIX) as holder:
        holder.settimeout(10)
        holder.connect(str(broker.path))
        holder.sendall(b"GET /v1/mod")
        assert broker.raw(b"GET /v1/models HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        assert holder.recv(4096) == b""

    assert broker.create().content[0].text == "served after"


def test_close_stops_serving_and_removes_the_socket(run: Any) -> None:
    broker = run()
    assert stat.S_IMODE(broker.path.stat().st_mode) == 0o600
    broker.broker.close()

    assert not broker.path.exists()
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.connect(str(broker.path))


def test_a_client_that_hangs_up_mid_stream_is_counted_so_far(run: Any) -> None:
    broker = run()
    hold = threading.Event()
    broker.api.reply_text("a long answer " * 20, input_tokens=300, output_tokens=80, hold=hold)
    broker.api.reply_text("next")

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(broker.path))
        body = json.dumps({"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True})
        extra = f"anthropic-version: 2023-06-01\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(header(broker, extra) + body.encode())
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ")
    hold.set()

    poll(lambda: any("relay cut" in line for line in broker.lines), 10, "the relay to end")
    assert broker.broker.usage.input_tokens == 300  # message_start had gone through
    assert broker.create().content[0].text == "next"


def test_without_a_credential_the_api_is_refused_and_egress_still_works(
    run: Any, origin: Origin
) -> None:
    allowed = origin.url.removeprefix("http://")
    broker = run(credential=None, allow_hosts=[allowed])
    broker.api.reply_text("never sent")

    with pytest.raises(anthropic.BadRequestError, match="no access to the model API"):
        broker.create()
    answer = broker.raw(f"GET {origin.url}/x HTTP/1.1\r\nConnection: close\r\n\r\n".encode())

    assert answer.endswith(b"origin saw GET /x")
    assert broker.api.requests == []


def test_a_credential_goes_into_an_environment_by_kind() -> None:
    assert Credential("api_key", Secret("k")).environment() == {"ANTHROPIC_API_KEY": "k"}
    assert Credential("oauth", Secret("t")).environment() == {"CLAUDE_CODE_OAUTH_TOKEN": "t"}
