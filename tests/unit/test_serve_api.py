"""``claude-cluster serve`` over real HTTP on 127.0.0.1, against a real state repo that real
agent processes work on: every field of /api/cluster/status against ``status --json``, task
histories against the history checker, the event stream, static assets, hostile requests."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.serve.app import App
from cluster.serve.auth import Gate
from cluster.serve.server import ServeServer
from cluster.serve.state import Fleet
from cluster.state.checker import check
from cluster.state.client import Held
from cluster.state.records import Result
from tests.clients import state_client
from tests.helpers import ROOT, commit_files, make_state, poll, task_doc, task_files

AGE_FIELDS = ("last_seen_age_s", "resumes_in_s")


def get(server: ServeServer, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def get_json(server: ServeServer, path: str) -> Any:
    status, _, body = get(server, path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Any]:
    started: list[ServeServer] = []

    def start(state: Path, token: str | None = None, static: Path | None = None,
              **kwargs: Any) -> ServeServer:
        from cluster.secret import Secret

        fleet = Fleet(state_client(state, tmp_path, "serve"), refresh=0.0)
        app = App(fleet, Gate(Secret(token) if token else None))
        if static is not None:
            app.static = static
        server = ServeServer(app, "127.0.0.1", 0, **kwargs)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()
        server.app.fleet.close()


def cli_status(state: Path, tmp_path: Path) -> Any:
    env = dict(os.environ, CLUSTER_WORKDIR=str(tmp_path / "cli-work"))
    done = subprocess.run([sys.executable, "-m", "cluster", "status", "--state", str(state),
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def without_ages(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in AGE_FIELDS}


def read_events(sock: socket.socket, count: int, timeout: float) -> list[dict[str, Any]]:
    """The data of the next ``count`` ``status`` events on an open event stream."""
    sock.settimeout(timeout)
    buffer, events = b"", list[dict[str, Any]]()
    while len(events) < count:
        chunk = sock.recv(65536)
        assert chunk, "the event stream ended"
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            lines = frame.decode().split("\n")
            if "event: status" in lines:
                data = next(line for line in lines if line.startswith("data: "))
                events.append(json.loads(data[len("data: "):]))
    return events


def open_stream(server: ServeServer) -> socket.socket:
    host, port = server.server_address[:2]
    sock = socket.create_connection((str(host), int(port)), timeout=10)
    sock.sendall(b"GET /api/events HTTP/1.1\r\nhost: x\r\n\r\n")
    return sock


def test_the_api_says_what_status_says_while_real_agents_work(
        tmp_path: Path, agents: Any, serving: Any) -> None:
    state = make_state(tmp_path, {"retry_backoff_seconds": 0.1, "fold_delay_seconds": 600})
    server = serving(state)
    stream = open_stream(server)
    first = read_events(stream, 1, 10)[0]
    assert first["tasks"]["total"] == 0
    docs = [task_doc("ok-1"), task_doc("ok-2", labels=["docs"]),
            task_doc("after-1", depends_on=["ok-1"], specialty="frontend"),
            task_doc("flaky", command='test "$CLUSTER_ATTEMPT" = 2', max_attempts=2)]
    files = {**task_files(docs), "tasks/broken.yaml": "id: broken\ntitle: [unclosed\n"}
    commit_files(state, files, tmp_path / "person")
    later = poll(lambda: [e for e in read_events(stream, 1, 10) if e["tasks"]["total"] >= 5],
                 30, "an event with the new tasks")
    assert later[0]["main"] != first["main"]
    stream.close()
    workers = [agents(state, name, specialty="backend,frontend", exit_when_idle=True,
                      lease=10, heartbeat=0.5, poll_s=0.3) for name in ("w1", "w2")]
    for worker in workers:
        assert worker.wait(120) == 0, worker.tail()

    api = get_json(server, "/api/cluster/status")
    cli = cli_status(state, tmp_path)
    assert api["main"] == cli["main"]
    assert api["nodes"] == cli["agents"]
    for bucket, count in cli["tasks"].items():
        assert api["tasks"][bucket] == count, bucket
    assert api["tasks"]["total"] == 5
    assert api["tasks"]["completed"] == sum(cli["tasks"][k] for k in
                                            ("succeeded", "failed", "invalid", "cancelled",
                                             "timed_out"))
    assert api["tasks"]["active"] == cli["tasks"]["claimed"]
    assert api["paused"] == cli["paused"] and api["unarchived"] == cli["unarchived"]
    assert len(api["node_details"]) == len(cli["agent_detail"]) == 2
    for node, agent in zip(api["node_details"], cli["agent_detail"], strict=True):
        assert node["node_id"] == agent["id"]
        assert node["status"] == "stopped" and agent["state"] == "stopped"
        for name in ("host", "state", "specialties", "capacity", "tasks", "last_seen",
                     "version", "reason", "online", "credentials"):
            assert node[name] == agent[name], name
        assert abs(node["last_seen_age_s"] - agent["last_seen_age_s"]) < 10
    assert api["tasks"]["invalid"] == 1  # broken.yaml, judged by an elected agent
    assert all(item["task"] == "broken" and item["reason"] for item in api["invalid"])
    assert api["stale"] == []

    rows = {row["id"]: row for row in get_json(server, "/api/tasks")["tasks"]}
    assert set(rows) == {"ok-1", "ok-2", "after-1", "flaky", "broken"}
    assert rows["flaky"]["state"] == "succeeded" and rows["flaky"]["attempt"] == 2
    assert rows["ok-2"]["labels"] == ["docs"] and rows["broken"]["state"] == "invalid"
    assert all(rows[k]["finished_at"] for k in ("ok-1", "ok-2", "after-1", "flaky"))
    listed = get_json(server, "/api/tasks?specialty=frontend")
    assert [row["id"] for row in listed["tasks"]] == ["after-1"] and listed["total"] == 1
    assert get_json(server, "/api/tasks?label=docs")["total"] == 1
    queue = get_json(server, "/api/queue/status")
    assert queue == {"pending": 0, "by_specialty": {}, "oldest_pending_age_s": None,
                     "claimable_now": 0, "waiting_on_dependencies": 0}
    assert_histories(server, state, ["ok-1", "ok-2", "after-1", "flaky"])

    with state_client(state, tmp_path, "folder") as folder:  # what the agents left unfolded
        folder.fold(folder.snapshot(), 100)
        assert not folder.snapshot().claims  # every chain now hangs off a fold commit
    assert_histories(server, state, ["ok-1", "ok-2", "after-1", "flaky"])
    api = get_json(server, "/api/cluster/status")
    cli = cli_status(state, tmp_path)
    assert api["main"] == cli["main"] and api["nodes"] == cli["agents"]
    assert {k: api["tasks"][k] for k in cli["tasks"]} == cli["tasks"]
    assert_metrics(server)


def assert_histories(server: ServeServer, state: Path, keys: list[str]) -> None:
    histories = check(state).histories
    for key in keys:
        detail = get_json(server, f"/api/tasks/{key}")
        steps = detail["history"]
        records = histories[key].records
        assert {step["commit"] for step in steps} == set(records), key
        assert [step["kind"] for step in steps] == [records[s["commit"]].KIND for s in steps]
        assert steps[-1]["kind"] == "result" and steps[0]["kind"] == "claim"
        assert detail["result"]["status"] == detail["state"] == steps[-1]["status"]
        assert detail["spec"]["id"] == key
    flaky = [(s["kind"], s["attempt"]) for s in get_json(server, "/api/tasks/flaky")["history"]]
    assert flaky == [("claim", 1), ("release", 1), ("claim", 2), ("result", 2)]
    release = get_json(server, "/api/tasks/flaky")["history"][1]
    assert release["counted"] is True and release["status"] == "failed"


def assert_metrics(server: ServeServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    rows = get_json(server, "/api/tasks")["tasks"]
    counted: dict[tuple[str, str], int] = {}
    for row in rows:
        counted[(row["state"], row["specialty"] or "")] = counted.get(
            (row["state"], row["specialty"] or ""), 0) + 1
    tasks = {(s.labels["state"], s.labels["specialty"]): s.value
             for s in samples["claude_cluster_fleet_tasks"]}
    assert tasks == counted
    cluster = get_json(server, "/api/cluster/status")
    assert samples["claude_cluster_fleet_agents_online"][0].value == cluster["nodes"]["online"]
    by_state = {s.labels["state"]: s.value for s in samples["claude_cluster_fleet_agents"]}
    assert by_state["stopped"] == 0 and by_state["offline"] == 2  # stopped is never online
    assert samples["claude_cluster_fleet_stale_claims"][0].value == len(cluster["stale"])
    assert samples["claude_cluster_fleet_invalid_tasks"][0].value == len(cluster["invalid"])
    assert samples["claude_cluster_fleet_oldest_pending_seconds"][0].value == 0
    assert samples["claude_cluster_fleet_cost_usd_total"][0].value == 0  # command tasks
    kinds = {s.labels["kind"] for s in samples["claude_cluster_fleet_tokens_total"]}
    assert kinds == {"input", "output"}


def test_health_and_unknown_or_unsafe_ids(tmp_path: Path, serving: Any) -> None:
    state = make_state(tmp_path)
    commit_files(state, task_files([task_doc("one", depends_on=["two"]), task_doc("two")]),
                 tmp_path / "person")
    server = serving(state)
    health = get_json(server, "/health")
    assert health["status"] == "ok" and health["state_repo"]["reachable"] is True
    assert health["state_repo"]["main"] == get_json(server, "/api/cluster/status")["main"]
    queue = get_json(server, "/api/queue/status")
    assert queue["pending"] == 2 and queue["claimable_now"] == 1
    assert queue["waiting_on_dependencies"] == 1 and queue["by_specialty"] == {"backend": 2}
    assert queue["oldest_pending_age_s"] is not None
    with state_client(state, tmp_path, "writer") as writer:  # a chain still on its claim ref
        snap = writer.snapshot()
        held = writer.claim(snap, snap.tasks["two"], 60)
        assert isinstance(held, Held)
        assert writer.finish(held, Result(task="two", status="succeeded", attempt=1,
                                          agent="writer", cost_usd=0.25, input_tokens=7,
                                          output_tokens=3))
    detail = get_json(server, "/api/tasks/two")
    assert [(s["kind"], s["agent"]) for s in detail["history"]] == [
        ("claim", "writer"), ("result", "writer")]
    assert {s["commit"] for s in detail["history"]} == set(check(state).histories["two"].records)
    assert detail["cost_usd"] == 0.25 and detail["result"]["input_tokens"] == 7
    assert get_json(server, "/api/queue/status")["claimable_now"] == 1  # one: its dependent
    status, _, body = get(server, "/api/tasks/nope")
    assert status == 404 and "nope" in json.loads(body)["error"]
    for bad in ("..%2f..%2fetc", "UPPER", "a.b", "x" * 10_000, "%00", "-lead"):
        status, _, body = get(server, f"/api/tasks/{bad}")
        assert status in (400, 414), (bad, status)
        assert json.loads(body)["error"]
    status, _, _ = get(server, "/api/cluster/status", method="POST")
    assert status == 405


def test_health_is_503_when_the_repo_cannot_be_read(tmp_path: Path, serving: Any) -> None:
    state = make_state(tmp_path)
    server = serving(state)
    assert get_json(server, "/health")["status"] == "ok"
    moved = state.rename(tmp_path / "elsewhere.git")
    status, _, body = get(server, "/health")
    assert status == 503 and json.loads(body)["status"] == "degraded"
    assert json.loads(body)["state_repo"]["reachable"] is False
    moved.rename(state)
    assert get(server, "/health")[0] == 200


def test_static_assets_and_traversal(tmp_path: Path, serving: Any) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>x</title>")
    (static / "app.js").write_text("console.log(1)")
    (static / "app.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("not yours")
    (static / "link.js").symlink_to(tmp_path / "secret.txt")
    server = serving(make_state(tmp_path), static=static)
    for path, kind in (("/", "text/html"), ("/static/app.js", "text/javascript"),
                       ("/static/app.css", "text/css")):
        status, headers, _ = get(server, path)
        assert status == 200 and headers["content-type"].startswith(kind), path
    for path in ("/static/../secret.txt", "/static/..%2fsecret.txt", "/static/%2e%2e/secret.txt",
                 "/static/%252e%252e%252fsecret.txt", "/static/", "/static/link.js",
                 "/static/.hidden.js", "/static/sub/app.js", "/static//etc/passwd",
                 "/../../secret.txt", "/static/app.js%00.css", "/static/secret.txt"):
        status, _, body = get(server, path)
        assert status == 404, (path, status)
        assert b"not yours" not in body


def test_hostile_requests_get_clear_answers(tmp_path: Path, serving: Any) -> None:
    from cluster.httpserve import Limits

    server = serving(make_state(tmp_path), limits=Limits(request_seconds=3.0, max_connections=4))
    status, _, body = get(server, "/api/tasks?" + "state=x&" * 5000)
    assert status == 414 and json.loads(body)["error"]
    status, _, body = get(server, "/api/tasks?" + "&".join(f"a{i}=1" for i in range(40)))
    assert status == 400 and "parameters" in json.loads(body)["error"]
    status, _, _ = get(server, "/nowhere")
    assert status == 404
    host, port = server.server_address[:2]
    idle = [socket.create_connection((str(host), int(port))) for _ in range(4)]
    try:
        extra = socket.create_connection((str(host), int(port)), timeout=5)
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")  # one too many: answered, closed
        extra.close()
        for sock in idle:  # the silent ones are dropped at their deadline, not kept forever
            sock.settimeout(10)
            assert sock.recv(4096) == b""
    finally:
        for sock in idle:
            sock.close()
    assert poll(lambda: get(server, "/health")[0] == 200, 10, "the server to answer again")


def test_event_streams_are_bounded_and_end_with_the_server(tmp_path: Path,
                                                           serving: Any) -> None:
    server = serving(make_state(tmp_path), max_streams=1, heartbeat=0.2)
    first = open_stream(server)
    assert read_events(first, 1, 10)[0]["tasks"]["total"] == 0
    status, _, body = get(server, "/api/events")
    assert status == 503 and "streams" in json.loads(body)["error"]
    first.settimeout(5)
    assert b": heartbeat" in poll(lambda: first.recv(4096), 5, "a heartbeat comment")
    server.shutdown()
    server.server_close()

    def ended() -> bool:
        try:
            return first.recv(4096) == b""
        except TimeoutError:
            return False

    assert poll(ended, 10, "the stream to end with the server")
    first.close()
