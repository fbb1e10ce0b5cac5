"""The webhook server over real HTTP on 127.0.0.1: signatures, replays, tasks on the state repo."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.errors import ConfigError, SecretMissing
from cluster.intake.deliveries import DeliveryLog
from cluster.intake.taskdoc import Policy
from cluster.intake.webhook import Limits, WebhookApp, WebhookServer, read_secret_file, signature
from cluster.secret import Secret
from cluster.state.init import init_state_repo
from tests.clients import state_client
from tests.helpers import ROOT, poll

SECRET = Secret("It's a Secret to Everybody")
REPO = "acme/web"


def issue_event(number: int, labels: tuple[str, ...] = ("cluster",), action: str = "labeled",
                added: str = "cluster") -> dict[str, Any]:
    return {
        "action": action,
        "label": {"name": added},
        "issue": {"number": number, "title": f"Issue {number}",
                  "html_url": f"https://github.com/{REPO}/issues/{number}",
                  "labels": [{"name": n} for n in labels]},
        "repository": {"full_name": REPO},
    }


def deliver(url: str, payload: object, *, event: str = "issues", delivery: str | None = None,
            secret: Secret | None = SECRET, sign: str | None = None) -> tuple[int, Any]:
    return deliver_raw(url, json.dumps(payload).encode(), event=event, delivery=delivery,
                       secret=secret, sign=sign)


def deliver_raw(url: str, body: bytes, *, event: str = "issues", delivery: str | None = None,
                secret: Secret | None = SECRET, sign: str | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json", "x-github-event": event,
               "x-github-delivery": delivery or str(uuid.uuid4())}
    if sign is not None:
        headers["x-hub-signature-256"] = sign
    elif secret is not None:
        headers["x-hub-signature-256"] = signature(secret, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Running:
    def __init__(self, state: str, tmp_path: Path, name: str = "hook",
                 limits: Limits | None = None) -> None:
        self.client = state_client(state, tmp_path, "intake", work=name)
        self.app = WebhookApp(self.client, Policy("cluster", specialty="backend"), SECRET,
                              DeliveryLog(tmp_path / "deliveries.txt"))
        self.server = WebhookServer(self.app, "127.0.0.1", 0, limits)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        self.url = self.server.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.client.close()

    def tasks(self) -> set[str]:
        return set(self.client.snapshot().tasks)


@pytest.fixture
def state(tmp_path: Path) -> str:
    repo = tmp_path / "state.git"
    init_state_repo(repo, hooks=ROOT / "hooks")
    return f"file://{repo}"


@pytest.fixture
def hook(state: str, tmp_path: Path) -> Iterator[Running]:
    running = Running(state, tmp_path)
    yield running
    running.stop()


def test_signed_labelled_issue_becomes_a_task(hook: Running) -> None:
    status, body = deliver(hook.url, issue_event(7))
    assert status == 202, body
    assert body["status"] == "created" and body["tasks"] == ["gh-web-7"]
    assert hook.tasks() == {"gh-web-7"}
    status, body = deliver(hook.url, issue_event(7, action="opened"))
    assert (status, body["status"]) == (200, "exists")


def test_unsigned_and_badly_signed_deliveries_are_refused(hook: Running) -> None:
    status, body = deliver(hook.url, issue_event(1), secret=None)
    assert status == 401 and "unsigned" in body["error"]
    status, body = deliver(hook.url, issue_event(1), secret=Secret("wrong"))
    assert status == 401 and "bad signature" in body["error"]
    status, body = deliver(hook.url, issue_event(1), sign="sha256=")
    assert status == 401
    assert hook.tasks() == set()


def test_replayed_delivery_is_ignored_even_after_a_restart(state: str, tmp_path: Path) -> None:
    first = Running(state, tmp_path, "first")
    delivery = str(uuid.uuid4())
    try:
        assert deliver(first.url, issue_event(3), delivery=delivery)[0] == 202
        # The same delivery id again, this time for another issue: a replay, not new work.
        status, body = deliver(first.url, issue_event(4), delivery=delivery)
        assert (status, body["status"]) == (200, "duplicate")
    finally:
        first.stop()
    again = Running(state, tmp_path, "again")  # a restart reads the same deliveries file
    try:
        status, body = deliver(again.url, issue_event(4), delivery=delivery)
        assert (status, body["status"]) == (200, "duplicate")
        assert again.tasks() == {"gh-web-3"}
    finally:
        again.stop()


def test_ping_and_other_events_are_answered(hook: Running) -> None:
    status, body = deliver(hook.url, {"zen": "Keep it logically awesome."}, event="ping")
    assert (status, body["status"]) == (200, "pong")
    status, body = deliver(hook.url, {"ref": "refs/heads/main"}, event="push")
    assert (status, body["status"]) == (200, "ignored")
    status, body = deliver(hook.url, issue_event(5, labels=("cluster", "bug"), added="bug"))
    assert (status, body["status"]) == (200, "ignored")
    status, body = deliver(hook.url, issue_event(6, labels=("bug",), action="opened"))
    assert (status, body["status"]) == (200, "ignored")
    assert hook.tasks() == set()


def test_delivery_log_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "seen.txt"
    log = DeliveryLog(path, limit=3)
    for n in range(10):
        log.add(f"d-{n}")
    assert len(path.read_text().split()) <= 6
    again = DeliveryLog(path, limit=3)
    assert "d-9" in again and "d-7" in again and "d-0" not in again
    with pytest.raises(ValueError):
        log.add("bad id\nwith a newline")


@contextmanager
def serve_command(state: str, tmp_path: Path, *flags: str) -> Iterator[tuple[str, Any]]:
    """``python -m cluster webhook serve`` on a free 127.0.0.1 port: its URL and its process.

    Leaving the block sends SIGTERM and expects exit 0 within 30 s (killed otherwise).
    """
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.reveal() + "\n")
    secret_file.chmod(0o600)
    argv = [sys.executable, "-m", "cluster", "webhook", "serve", "--state", state,
            "--secret-file", str(secret_file), "--label", "cluster", "--specialty", "docs",
            "--port", "0", "--deliveries-file", str(tmp_path / "seen.txt"), *flags]
    env = dict(os.environ, CLUSTER_WORKDIR=str(tmp_path / "work"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints it once it listens: no sleeping
        assert line.startswith("listening on http://127.0.0.1:"), line + proc.stdout.read()
        yield line.split()[-1], proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_command_runs_until_sigterm(state: str, tmp_path: Path) -> None:
    with serve_command(state, tmp_path) as (url, _):
        status, body = deliver(url, issue_event(9))
        assert status == 202 and body["tasks"] == ["gh-web-9"]
    assert poll(lambda: (tmp_path / "seen.txt").read_text().strip(), 5, "delivery recorded")


def padded(number: int, size: int) -> bytes:
    """A signed-able issues event of exactly ``size`` bytes."""
    base = len(json.dumps({**issue_event(number), "pad": ""}).encode())
    body = json.dumps({**issue_event(number), "pad": "x" * (size - base)}).encode()
    assert len(body) == size
    return body


def test_max_body_bytes_flag_reaches_the_server(state: str, tmp_path: Path) -> None:
    limit = 2048
    with serve_command(state, tmp_path, "--max-body-bytes", str(limit),
                       "--request-seconds", "5", "--max-connections", "4") as (url, _):
        over = padded(21, limit + 1)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(post(b"", str(len(over))))  # judged by its length, before its bytes
            answer = read_to_close(sock)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert f"body larger than {limit} bytes".encode() in answer
        status, body = deliver_raw(url, padded(22, limit))  # exactly the limit is allowed
        assert (status, body["status"]) == (202, "created"), body
        assert body["tasks"] == ["gh-web-22"]


def test_limit_flags_default_to_the_servers_limits() -> None:
    from cluster.cli import build_parser
    from cluster.cli.serving import limits_from

    base = ["webhook", "serve", "--state", "s", "--label", "l", "--secret-file", "f"]
    assert limits_from(build_parser().parse_args(base)) == Limits()
    given = build_parser().parse_args([*base, "--max-body-bytes", "10", "--request-seconds",
                                       "0.5", "--max-connections", "2"])
    assert limits_from(given) == Limits(max_body=10, request_seconds=0.5, max_connections=2)


@pytest.mark.parametrize(("flag", "value", "noun"), [
    ("--max-body-bytes", "0", "integer"), ("--max-body-bytes", "-1", "integer"),
    ("--max-body-bytes", "lots", "integer"), ("--max-body-bytes", "1.5", "integer"),
    ("--request-seconds", "0", "number"), ("--request-seconds", "-1", "number"),
    ("--request-seconds", "soon", "number"), ("--request-seconds", "nan", "number"),
    ("--request-seconds", "inf", "number"),
    ("--max-connections", "0", "integer"), ("--max-connections", "-1", "integer"),
    ("--max-connections", "many", "integer"),
])
def test_a_bad_limit_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      flag: str, value: str, noun: str) -> None:
    from cluster.cli import main

    argv = ["webhook", "serve", "--state", str(tmp_path / "absent.git"), "--label", "cluster",
            "--specialty", "docs", "--secret-file", str(tmp_path / "absent"), flag, value]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}: must be a positive {noun}, got {value!r}" in err, err
    assert "Traceback" not in err


# Hostile clients, on raw sockets where urllib would refuse to send such a request. Each test
# ends with an ordinary signed delivery, so a receiver that fell over cannot pass.

QUICK = Limits(max_body=64 * 1024, request_seconds=1.0, max_connections=4)
ISSUES = iter(range(1000, 100_000))


@pytest.fixture
def tight(state: str, tmp_path: Path) -> Iterator[Running]:
    running = Running(state, tmp_path, limits=QUICK)
    yield running
    running.stop()


def still_serves(running: Running) -> None:
    status, body = deliver(running.url, issue_event(next(ISSUES)))
    assert (status, body["status"]) == (202, "created"), body


def connect(running: Running) -> socket.socket:
    host, port = running.server.server_address[:2]
    return socket.create_connection((str(host), int(port)), timeout=10)


def exchange(running: Running, data: bytes) -> tuple[int, bytes]:
    """Send ``data``, read until the server closes; its status and all it answered."""
    with connect(running) as sock:
        sock.sendall(data)
        answer = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 "), answer
    return int(answer.split()[1]), answer


def read_to_close(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):  # the 10 s socket timeout bounds a server that never closes
        chunks.append(chunk)
    return b"".join(chunks)


def post(body: bytes, length: str | None = None, extra: str = "") -> bytes:
    head = (f"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-github-event: issues\r\n"
            f"x-github-delivery: {uuid.uuid4()}\r\n"
            f"x-hub-signature-256: {signature(SECRET, body)}\r\n")
    if length is not None:
        head += f"content-length: {length}\r\n"
    return (head + extra + "\r\n").encode() + body


@pytest.mark.parametrize(("length", "extra", "status"), [
    (None, "", 411),
    (None, "transfer-encoding: chunked\r\n", 411),
    ("-1", "", 400),
    ("abc", "", 400),
    ("1_0", "", 400),
    ("+2", "", 400),
    ("2", "content-length: 3\r\n", 400),
])
def test_a_missing_or_malformed_length_is_refused(tight: Running, length: str | None,
                                                  extra: str, status: int) -> None:
    body = json.dumps(issue_event(next(ISSUES))).encode()
    got, answer = exchange(tight, post(body, length, extra))
    assert got == status, answer
    assert b"connection: close" in answer.lower() and b"content-length" in answer.lower()
    assert tight.tasks() == set()
    still_serves(tight)


def test_a_body_over_the_limit_is_413_unread(tight: Running) -> None:
    # Nothing of the announced body is sent: the answer must come without waiting for it.
    got, answer = exchange(tight, post(b"", str(QUICK.max_body + 1)))
    assert got == 413 and str(QUICK.max_body).encode() in answer
    got, answer = exchange(tight, post(b"", "9" * 15))
    assert got == 413
    still_serves(tight)


@pytest.mark.parametrize("opening", [
    b"",  # connects and says nothing
    b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\n",  # headers that never end
    b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000\r\n\r\n{",  # a body, slowly
])
def test_a_slow_client_is_dropped_while_others_are_served(tight: Running, opening: bytes) -> None:
    trickle = b"x-slow: 1\r\n" if opening.endswith(b"\r\n") else b" "
    with connect(tight) as sock:
        sock.sendall(opening)
        still_serves(tight)  # served while the slow one holds its connection
        dropped = False
        for _ in range(100):  # a byte every 0.1 s for at most 10 s: each byte is on time
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                read_to_close(sock)
                dropped = True
                break
            try:
                sock.sendall(trickle)
            except OSError:
                dropped = True
                break
        assert dropped, "the slow client kept its connection"
    still_serves(tight)


def test_connections_over_the_bound_get_503(state: str, tmp_path: Path) -> None:
    running = Running(state, tmp_path, limits=Limits(request_seconds=30, max_connections=3))
    held = [connect(running) for _ in range(3)]
    try:
        with connect(running) as extra:
            answer = read_to_close(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"too many connections" in answer
    finally:
        for sock in held:
            sock.close()
    try:
        # The held connections' threads end once they see EOF; then the slots are free again.
        poll(lambda: deliver_raw_quiet(running), 10, "a slot freed after the clients left")
        still_serves(running)
    finally:
        running.stop()


def deliver_raw_quiet(running: Running) -> bool:
    try:
        return deliver(running.url, {"zen": "hi"}, event="ping")[0] == 200
    except OSError:
        return False


SHAPES: list[bytes] = [
    b"[]", b"[1, 2]", b'"issue"', b"7", b"null", b"true", b"{}", b"1e999",
    b'{"issue": [], "repository": {"full_name": "acme/web"}}',
    b'{"issue": "x", "repository": {"full_name": "acme/web"}}',
    b'{"issue": {"number": 1}, "repository": "acme/web"}',
    b'{"issue": {"number": "7", "title": "t", "html_url": "u"}, '
    b'"repository": {"full_name": "a/b"}}',
    b'{"issue": {"number": true, "title": "t", "html_url": "u"}, '
    b'"repository": {"full_name": "a/b"}}',
    b'{"issue": {"number": 1e999, "title": "t", "html_url": "u"}, '
    b'"repository": {"full_name": "a/b"}}',
    b'{"action": "labeled", "label": "cluster", "issue": {"number": 1, "title": "t", '
    b'"html_url": "u", "labels": [{"name": "cluster"}]}, "repository": {"full_name": "a/b"}}',
    b'{"issue": {"number": 1, "title": "t", "html_url": "u", "labels": "cluster"}, '
    b'"repository": {"full_name": "a/b"}}',
    b'{"issue": {"number": 1, "title": "t", "html_url": "u", "labels": ["cluster"]}, '
    b'"repository": {"full_name": "a/b"}}',
    b'{"issue": {"number": 1, "title": "t", "html_url": "u"}, "repository": {"full_name": {}}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe not json", b"{",
]


@pytest.mark.parametrize("body", SHAPES, ids=[repr(s[:24]) for s in SHAPES])
def test_every_signed_json_shape_gets_an_answer(hook: Running, body: bytes) -> None:
    status, answer = deliver_raw(hook.url, body)
    assert status == 400 and answer["error"], answer
    assert hook.tasks() == set()
    still_serves(hook)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=16,
)
FIELDS = [("action",), ("label",), ("label", "name"), ("issue",), ("issue", "number"),
          ("issue", "title"), ("issue", "html_url"), ("issue", "labels"), ("repository",),
          ("repository", "full_name")]


def mutated(number: int, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    event = issue_event(number)
    where: Any = event
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return event


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON | st.builds(mutated, st.integers(1, 10**6), st.sampled_from(FIELDS), JSON))
def test_any_signed_json_body_gets_a_status_code(hook: Running, payload: Any) -> None:
    status, answer = deliver(hook.url, payload)
    assert status in (200, 202, 400), answer
    assert isinstance(answer, dict)


def test_the_secret_file_must_be_its_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\nignored\n")
    for mode in (0o644, 0o640, 0o604, 0o620):
        path.chmod(mode)
        with pytest.raises(ConfigError, match=f"mode {mode:04o}.*chmod 600"):
            read_secret_file(path)
    path.chmod(0o600)
    assert read_secret_file(path).reveal() == "s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("\n")
    with pytest.raises(SecretMissing, match="empty"):
        read_secret_file(path)
    with pytest.raises(SecretMissing, match="cannot be read"):
        read_secret_file(tmp_path / "absent")
