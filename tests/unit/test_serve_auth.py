"""The serve token: required off loopback, read from a 0600 file or the environment, checked
on every request but /health (the page, its assets and the event stream too)."""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import threading
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from cluster.cli.serve import build_server, register, serve_until_stopped
from cluster.errors import ConfigError, SecretMissing
from cluster.secret import Secret
from cluster.serve.app import App
from cluster.serve.auth import Gate, find_token, is_loopback, read_token_file, require_token
from cluster.serve.server import ServeServer
from cluster.serve.state import Fleet
from tests.clients import state_client
from tests.helpers import make_state, poll

TOKEN = "s3cret-token-for-the-dashboard"


def token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "serve.token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def request(server: ServeServer, path: str, headers: dict[str, str] | None = None) -> Any:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        if answer.getheader("content-type", "").startswith("text/event-stream"):
            return answer.status, dict(answer.getheaders()), answer.fp.readline()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ServeServer]:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>page</title>")
    (static / "app.js").write_text("1")
    fleet = Fleet(state_client(make_state(tmp_path), tmp_path, "serve"), refresh=0.0)
    server = ServeServer(App(fleet, Gate(Secret(TOKEN)), static), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
    fleet.close()


@pytest.mark.parametrize(("bind", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("dashboard.example", False),
])
def test_loopback_is_judged_by_address(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback


def test_off_loopback_without_a_token_refuses_to_start(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    state = make_state(tmp_path)
    monkeypatch.delenv("CLUSTER_SERVE_TOKEN", raising=False)
    for bind in ("0.0.0.0", "::", "10.1.2.3"):
        with pytest.raises(ConfigError, match=r"not a loopback address.*needs a token"):
            build_server(str(state), bind, 0, None, 1.0)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--state", str(state), "--bind", "0.0.0.0"])
    with pytest.raises(ConfigError, match="CLUSTER_SERVE_TOKEN"):
        args.func(args)
    require_token("0.0.0.0", Secret(TOKEN))  # with one it may
    require_token("127.0.0.1", None)  # loopback needs none


def test_token_sources_and_their_checks(tmp_path: Path) -> None:
    assert find_token(None, {}) is None
    assert find_token(None, {"CLUSTER_SERVE_TOKEN": TOKEN}) == Secret(TOKEN)
    assert find_token(token_file(tmp_path), {"CLUSTER_SERVE_TOKEN": "other-" + TOKEN}) == \
        Secret(TOKEN)  # the file wins
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        read_token_file(token_file(tmp_path, mode=0o644))
    with pytest.raises(ConfigError, match="mode 0640"):
        read_token_file(token_file(tmp_path, mode=0o640))
    with pytest.raises(SecretMissing, match="empty"):
        read_token_file(token_file(tmp_path, text=""))
    with pytest.raises(SecretMissing, match="cannot be read"):
        read_token_file(tmp_path / "absent")
    with pytest.raises(ConfigError, match="at least 16"):
        find_token(None, {"CLUSTER_SERVE_TOKEN": "short"})


def test_every_route_but_health_needs_the_token(guarded: ServeServer) -> None:
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    wrong = [{}, {"authorization": "Bearer nope"}, {"authorization": f"Bearer {TOKEN}x"},
             {"authorization": f"Basic {base64.b64encode(b'u:nope').decode()}"},
             {"authorization": "Basic !!!"}, {"cookie": "claude_cluster_token=nope"},
             {"authorization": TOKEN}, {"cookie": "bad\x00cookie"}]
    right = [{"authorization": f"Bearer {TOKEN}"}, {"authorization": f"bearer {TOKEN}"},
             {"authorization": f"Basic {basic}"}, {"cookie": f"claude_cluster_token={TOKEN}"}]
    for path in ("/", "/index.html", "/static/app.js", "/api/cluster/status", "/api/tasks",
                 "/api/tasks/x", "/api/queue/status", "/metrics", "/api/events", "/nowhere"):
        for headers in wrong:
            status, answer_headers, body = request(guarded, path, headers)
            assert status == 401, (path, headers)
            assert "basic" in answer_headers["www-authenticate"].lower()
            assert b"page" not in body and json.loads(body)["error"]
        for headers in right:
            status, _, _ = request(guarded, path, headers)
            assert status == (404 if path in ("/nowhere", "/api/tasks/x") else 200), (path, status)
    status, _, body = request(guarded, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_loopback_needs_no_token_and_the_start_says_what_is_required(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = make_state(tmp_path)
    monkeypatch.setenv("CLUSTER_WORKDIR", str(tmp_path / "work"))
    monkeypatch.delenv("CLUSTER_SERVE_TOKEN", raising=False)
    for token in (None, token_file(tmp_path)):
        server = build_server(str(state), "127.0.0.1", 0, token, 0.1)
        stop, said = threading.Event(), io.StringIO()

        def run(server: Any = server, stop: threading.Event = stop,
                said: io.StringIO = said) -> None:
            with redirect_stdout(said):
                serve_until_stopped(server, stop)

        thread = threading.Thread(target=run)
        thread.start()
        poll(lambda: "serving" in said.getvalue(), 10, "the start line")  # noqa: B023
        expected = 200 if token is None else 401
        assert request(server, "/api/cluster/status")[0] == expected
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        line = said.getvalue()
        assert ("a token is required" in line) == (token is not None)
        assert ("no token: loopback only" in line) == (token is None)
