"""The webhook server over real HTTP on 127.0.0.1: signatures, replays, tasks on the state repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.intake.deliveries import DeliveryLog
from cluster.intake.taskdoc import Policy
from cluster.intake.webhook import WebhookApp, WebhookServer, signature
from cluster.secret import Secret
from cluster.state.client import Identity, StateClient
from cluster.state.init import init_state_repo
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
    body = json.dumps(payload).encode()
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
    def __init__(self, state: str, tmp_path: Path, name: str = "hook") -> None:
        self.client = StateClient(state, tmp_path / name, Identity("intake"))
        self.app = WebhookApp(self.client, Policy("cluster", specialty="backend"), SECRET,
                              DeliveryLog(tmp_path / "deliveries.txt"))
        self.server = WebhookServer(self.app, "127.0.0.1", 0)
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


def test_serve_command_runs_until_sigterm(state: str, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.reveal() + "\n")
    script = ("import argparse, sys\nfrom cluster.cli.intake import register\n"
              "p = argparse.ArgumentParser(); register(p.add_subparsers(dest='c'))\n"
              "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")
    argv = [sys.executable, "-c", script, "webhook", "serve", "--state", state,
            "--secret-file", str(secret_file), "--label", "cluster", "--specialty", "docs",
            "--port", "0", "--deliveries-file", str(tmp_path / "seen.txt")]
    env = dict(os.environ, CLUSTER_WORKDIR=str(tmp_path / "work"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        status, body = deliver(url, issue_event(9))
        assert status == 202 and body["tasks"] == ["gh-web-9"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert poll(lambda: (tmp_path / "seen.txt").read_text().strip(), 5, "delivery recorded")
