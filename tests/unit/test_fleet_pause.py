"""Usage windows are the fleet's, and a refused credential stops its agent: real agent
processes, real state and target repos, the Messages API stand-in on 127.0.0.1.

Three agents share one API key and a fourth has its own. When one of the three meets the key's
usage limit, the other two stop claiming because its heartbeat says so (they never meet the
limit themselves: the stand-in answers exactly one 429), the fourth goes on, and after the
reset every task ends once, no attempt burnt. Then a revoked credential: the SDK executor's API
key, and the Claude Code CLI's subscription token held by the broker.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.credentials import fingerprint
from cluster.demo import sample_repo
from cluster.sandbox.broker import OAUTH_BETA
from cluster.secret import Secret
from cluster.state.checker import check
from cluster.state.records import Claim, Heartbeat, Release, Result, unstamp
from tests.clients import state_client
from tests.fakes import Request, Response
from tests.fakes.anthropic_api import FakeAnthropic, error_body, text_block, tool_use_block
from tests.fakes.fixtures import require_claude_cli
from tests.helpers import (
    ROOT,
    AgentProcess,
    commit_files,
    git,
    make_state,
    poll,
    task_doc,
    task_files,
)

KEY_A = "sk-ant-api03-shared-fleet-key-A-0123456789abcdef0123456789"
KEY_B = "sk-ant-api03-other-fleet-key-B-9876543210fedcba9876543210"
TOKEN = "sk-ant-oat01-subscription-token-0123456789abcdef0123456789abcdef"
WINDOW = 8.0  # seconds the shared key's usage window stays spent
SETTINGS = {"fold_delay_seconds": 0.2, "retry_backoff_seconds": 0.1, "skew_seconds": 0.5}
_FILE = re.compile(r"done-([a-z0-9-]+)\.txt")


class FleetAPI(FakeAnthropic):
    """Answers every conversation by itself: the first turn writes ``done-<task>.txt`` (named
    in the prompt), the next ends it. ``limited_key`` meets its usage limit on the first
    request whose prompt says LIMIT, and stays limited for WINDOW seconds: each request with it
    then gets a 429 naming the reset, as a subscription's window does."""

    def __init__(self, keys: tuple[str, ...], limited_key: str) -> None:
        super().__init__(api_key=keys[0])
        self.keys = keys
        self.limited_key = limited_key
        self.limited_until: float | None = None
        self.limits: list[float] = []  # when each 429 went out
        self.served: dict[str, int] = {key: 0 for key in keys}
        self._guard = threading.Lock()

    def _key(self, request: Request) -> str | None:
        given = request.headers.get("x-api-key") or request.headers.get(
            "authorization", "").removeprefix("Bearer ")
        return given if given in self.keys else None

    def handle(self, request: Request) -> Response:
        if request.path != "/v1/messages":
            return super().handle(request)  # a 404, as the API says it
        key = self._key(request)
        if key is None:  # unknown or revoked
            return Response.json(401, error_body("authentication_error", "invalid x-api-key",
                                                 "req_401"))
        body = request.json()
        prompt = body["messages"][0]["content"]
        now = time.time()
        with self._guard:
            if key == self.limited_key and self.limited_until is None and "LIMIT" in prompt:
                self.limited_until = now + WINDOW
            until = self.limited_until
            if key == self.limited_key and until is not None and now < until:
                self.limits.append(now)
                return self._usage_limit(until, now)
            self.served[key] += 1
        task = _FILE.search(prompt)
        assert task is not None, prompt
        if len(body["messages"]) == 1:
            write = {"path": task[0], "content": "done\n"}
            content = [tool_use_block("write_file", write, f"toolu_{task[1]}")]
            stop = "tool_use"
        else:
            content, stop = [text_block(f"Wrote {task[0]}.")], "end_turn"
        message = {"id": f"msg_{task[1]}_{len(body['messages'])}", "type": "message",
                   "role": "assistant", "model": body["model"], "content": content,
                   "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 5}}
        return Response.json(200, message)

    def _usage_limit(self, until: float, now: float) -> Response:
        headers = {"retry-after": str(math.ceil(until - now)),
                   "anthropic-ratelimit-unified-status": "rejected",
                   "anthropic-ratelimit-unified-reset": str(math.ceil(until))}
        body = error_body("rate_limit_error", "Claude usage limit reached.", "req_limit")
        return Response.json(429, body, headers)


@pytest.fixture
def fleet_api() -> Iterator[FleetAPI]:
    with FleetAPI((KEY_A, KEY_B), KEY_A) as api:
        yield api
        assert not api.errors, "the stand-in crashed:\n" + "\n".join(api.errors)


def done_task(task_id: str, target: Path, *, extra: str = "", **fields: Any) -> dict[str, Any]:
    return task_doc(task_id, repo=str(target), executor={"kind": "claude"}, max_attempts=1,
                    prompt=f"Write done-{task_id}.txt.{extra}", **fields)


def start_agent(agents: Any, state: Path, tmp_path: Path, name: str, api_url: str,
                monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str,
                **kwargs: Any) -> AgentProcess:
    """A repo agent whose environment holds ``env`` (its secrets) and nothing else of ours."""
    for var in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    extra = ["--pull-request-dir", str(tmp_path / "prs"), "--anthropic-base-url", api_url, *args]
    proc: AgentProcess = agents(state, name, runner="repo", lease=10, heartbeat=1, extra=extra,
                                **kwargs)
    return proc


class Reader:
    """Reads the state repo as `status` does, from its own mirror."""

    def __init__(self, state: Path, tmp_path: Path) -> None:
        self.client = state_client(state, tmp_path)

    def heartbeats(self) -> dict[str, Heartbeat]:
        return dict(self.client.snapshot().agents)

    def results(self) -> dict[str, Result]:
        snap = self.client.snapshot()
        found = {key: snap.result(key) for key in set(snap.tasks) | set(snap.claims)
                 | set(snap.archived)}
        return {key: result for key, result in found.items() if result is not None}

    def close(self) -> None:
        self.client.close()


def status_json(state: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "cluster", "status", "--state", str(state),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=True)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_nowhere(secrets: tuple[str, ...], tmp_path: Path, *repos: Path) -> None:
    """No file under ``tmp_path`` (logs, events, results, workspaces, mirrors) and no object
    of the repos holds any of ``secrets``."""
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"a secret is in {path}"
    for repo in repos:
        history = git(["log", "--all", "-p", "--format=%H %B"], repo)
        for secret in secrets:
            assert secret not in history, f"a secret is in {repo}"


def claims_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "claimed"]


def test_a_usage_limit_pauses_every_agent_sharing_the_credential(
    tmp_path: Path, agents: Any, monkeypatch: pytest.MonkeyPatch, fleet_api: FleetAPI
) -> None:
    state, target = make_state(tmp_path, SETTINGS), sample_repo(tmp_path)
    # Stage 1: one task only the three agents sharing KEY_A serve; whoever takes it meets the
    # key's usage limit while the others are idle.
    commit_files(state, task_files([done_task("t-limit", target, extra=" LIMIT",
                                              specialty="data")]), tmp_path / "person")
    shared = {name: start_agent(agents, state, tmp_path, name, fleet_api.url, monkeypatch,
                                {"ANTHROPIC_API_KEY": KEY_A}, "--executors", "claude",
                                specialty="backend,data")
              for name in ("a1", "a2", "a3")}
    other = start_agent(agents, state, tmp_path, "b1", fleet_api.url, monkeypatch,
                        {"ANTHROPIC_API_KEY": KEY_B}, "--executors", "claude")
    fp_a, fp_b = fingerprint("api_key", Secret(KEY_A)), fingerprint("api_key", Secret(KEY_B))
    reader = Reader(state, tmp_path)
    try:
        def fleet_paused() -> dict[str, Heartbeat] | None:
            beats = reader.heartbeats()
            paused = {n: beats[n] for n in shared if n in beats and beats[n].state == "paused"}
            return paused if len(paused) == 3 else None

        beats = poll(fleet_paused, 90, lambda: "all three KEY_A agents paused; logs:\n"
                     + "\n".join(p.tail()[-1500:] for p in shared.values()))
        limited = [n for n, p in shared.items() if p.saw("paused", "t-limit")]
        assert len(limited) == 1, limited
        first = limited[0]
        until = beats[first].paused_until
        assert until is not None
        for beat in beats.values():  # one window, published with the key's fingerprint
            assert (beat.paused_for, beat.paused_by, beat.paused_until) == (fp_a, first, until)
            assert beat.credentials == (fp_a,)
            assert KEY_A not in json.dumps(beat.__dict__, default=str)
        for name in set(shared) - {first}:  # the pause came from the first agent's heartbeat
            adopted = shared[name].saw("fleet_paused")
            assert adopted is not None and adopted["by"] == first, adopted
            assert adopted["credential"] == fp_a and unstamp(adopted["until"]) == until
        free = reader.heartbeats()["b1"]
        assert (free.state, free.credentials, free.paused_until) == ("running", (fp_b,), None)
        report = status_json(state)
        groups = report["paused"]
        assert [(g["credential"], sorted(g["agents"]), g["met_by"]) for g in groups] == [
            (fp_a, ["a1", "a2", "a3"], first)]
        assert 0 < groups[0]["resumes_in_s"] <= WINDOW + 1

        # Stage 2: work all four serve, submitted while the window is spent.
        docs = [done_task(f"t-{n}", target) for n in range(8)]
        commit_files(state, task_files(docs), tmp_path / "person")
        wanted = {"t-limit", *(d["id"] for d in docs)}
        poll(lambda: set(reader.results()) >= wanted, 180,
             lambda: f"every task to end; results so far {sorted(reader.results())}")
        results = reader.results()
    finally:
        reader.close()
        for proc in [*shared.values(), other]:
            proc.stop()

    assert {k: (r.status, r.attempt) for k, r in results.items()} == {
        k: ("succeeded", 1) for k in wanted}, {k: r.reason for k, r in results.items()}
    assert len(fleet_api.limits) == 1  # only the first agent met the limit: the others waited
    audit = check(state)
    assert audit.summary()["duplicated"] == 0 and audit.summary()["lost"] == 0
    assert audit.summary()["stale"] == 0
    releases = [r for h in audit.histories.values() for r in h.records.values()
                if isinstance(r, Release)]
    assert [(r.task, r.agent, r.status, r.counted) for r in releases] == [
        ("t-limit", first, "paused", False)]
    # No agent sharing KEY_A claimed anything from when it knew of the window until its end,
    # although there was work it serves; the agent with KEY_B claimed meanwhile.
    for name, proc in shared.items():
        events = proc.events()
        knew = next(e["ts"] for e in events if e["event"] in ("paused", "fleet_paused"))
        early = [e for e in claims_of(events) if knew < e["ts"] < until]
        assert early == [], (name, early)
    assert any(e["ts"] < until for e in claims_of(other.events())), other.events()
    # The window's own task ran again on attempt 1, claimed once its release allowed: by the
    # agent with the other key as soon as that (its clock may put it a hair before the window's
    # end), by an agent sharing the key only after the window.
    chain = list(audit.histories["t-limit"].records.values())
    release = next(r for r in chain if isinstance(r, Release))
    retry = [r for r in chain if isinstance(r, Claim) and r.claimed_at >= release.not_before]
    assert [c.attempt for c in retry] == [1], chain
    # (claimed_at is stamped to the hundredth: a claim made the instant the window ends may
    # read as equal to its end)
    assert retry[0].agent not in shared or retry[0].claimed_at >= until, (retry, until)
    assert_nowhere((KEY_A, KEY_B), tmp_path, state, target)


def test_a_revoked_api_key_blocks_the_agent_without_burning_attempts(
    tmp_path: Path, agents: Any, monkeypatch: pytest.MonkeyPatch, fleet_api: FleetAPI
) -> None:
    state, target = make_state(tmp_path, SETTINGS), sample_repo(tmp_path)
    commit_files(state, task_files([done_task("t-ok", target)]), tmp_path / "person")
    agent = start_agent(agents, state, tmp_path, "k1", fleet_api.url, monkeypatch,
                        {"ANTHROPIC_API_KEY": KEY_A}, "--executors", "claude")
    reader = Reader(state, tmp_path)
    try:
        poll(lambda: "t-ok" in reader.results(), 90, lambda: f"t-ok to end:\n{agent.tail()}")
        fleet_api.keys = (KEY_B,)  # KEY_A is revoked: the stand-in answers it with a 401
        commit_files(state, task_files([done_task("t-revoked", target),
                                        done_task("t-after", target)]), tmp_path / "person")
        blocked = poll(lambda: (b := reader.heartbeats().get("k1")) and b.state == "blocked"
                       and b, 90, lambda: f"k1 blocked; log:\n{agent.tail()}")
        # Several heartbeats later it still claims nothing, though t-revoked is claimable again.
        seen = blocked.last_seen
        poll(lambda: reader.heartbeats()["k1"].last_seen > seen + 2 * blocked.heartbeat_seconds,
             30, "more heartbeats")
        report = status_json(state)
    finally:
        reader.close()
        agent.stop()

    assert "refused the API key" in (blocked.reason or ""), blocked
    assert [e.get("task") for e in claims_of(agent.events())][-1] in ("t-revoked", "t-after")
    assert len(claims_of(agent.events())) == 2  # t-ok, then one that met the refusal
    refused = agent.saw("credential_refused")
    assert refused is not None
    row = next(a for a in report["agent_detail"] if a["id"] == "k1")
    assert row["state"] == "blocked" and "refused the API key" in row["reason"]
    history = check(state)
    releases = [r for h in history.histories.values() for r in h.records.values()
                if isinstance(r, Release)]
    assert [(r.task, r.status, r.counted) for r in releases] == [
        (refused["task"], "paused", False)]
    assert history.tasks["t-ok"] == ("done", "succeeded")
    assert_nowhere((KEY_A, KEY_B), tmp_path, state, target)


class SubscriptionAPI(FakeAnthropic):
    """The API as a subscription's OAuth token reaches it: a Bearer token with the OAuth beta,
    never an x-api-key; once ``revoked``, every call is a 401 ``authentication_error``."""

    revoked = False
    refused = 0  # 401s answered: the CLI must not retry one

    def _authorized(self, request: Request) -> bool:
        betas = request.headers.get("anthropic-beta", "").split(",")
        return (request.headers.get("authorization") == f"Bearer {self.api_key}"
                and OAUTH_BETA in [b.strip() for b in betas]
                and "x-api-key" not in request.headers)

    def handle(self, request: Request) -> Response:
        if self.revoked:
            self.refused += 1
            body = error_body("authentication_error", "OAuth token has been revoked.", "req_x")
            return Response.json(401, body)
        return super().handle(request)


def test_a_revoked_subscription_token_blocks_the_claude_code_agent(
    tmp_path: Path, agents: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_claude_cli()
    state, target = make_state(tmp_path, SETTINGS), sample_repo(tmp_path)
    # The model's command also looks for the token: in its environment and every process's.
    fix = ("sed -i 's/a - b/a + b/' calc.py; env > leaked-env.txt; "
           "cat /proc/*/environ >> leaked-env.txt; true")
    doc = task_doc("cc-ok", repo=str(target), verify="python3 test_calc.py", max_attempts=1,
                   prompt="Make test_calc.py pass.", executor={"kind": "claude-code"})
    commit_files(state, task_files([doc]), tmp_path / "person")
    with SubscriptionAPI(api_key=TOKEN) as api:
        api.reply_tool_use(("Bash", {"command": fix, "description": "Fix add"}))
        api.reply_text("Fixed add().")
        agent = start_agent(agents, state, tmp_path, "cc1", api.url, monkeypatch,
                            {"CLAUDE_CODE_OAUTH_TOKEN": TOKEN}, "--executors", "claude-code")
        reader = Reader(state, tmp_path)
        try:
            poll(lambda: "cc-ok" in reader.results(), 180, lambda: f"cc-ok:\n{agent.tail()}")
            api.revoked = True
            again = dict(doc, id="cc-revoked")
            commit_files(state, task_files([again]), tmp_path / "person")
            blocked = poll(lambda: (b := reader.heartbeats().get("cc1")) and b.state == "blocked"
                           and b, 240, lambda: f"cc1 blocked; log:\n{agent.tail()}")
            report = status_json(state)
        finally:
            reader.close()
            agent.stop()
        assert not api.errors, api.errors
        assert api.refused == 1  # one refusal ended the attempt: no retries for minutes
        assert api.requests and all(  # the broker sent the token as the API takes it
            r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api.requests)

    results = check(state)
    assert results.tasks["cc-ok"] == ("done", "succeeded")
    releases = [r for r in results.histories["cc-revoked"].records.values()
                if isinstance(r, Release)]
    assert [(r.status, r.counted) for r in releases] == [("paused", False)]
    assert "refused the OAuth token" in (blocked.reason or ""), blocked
    row = next(a for a in report["agent_detail"] if a["id"] == "cc1")
    assert row["state"] == "blocked" and "OAuth token" in row["reason"]
    assert blocked.credentials == (fingerprint("oauth", Secret(TOKEN)),)
    leaked = git(["show", "cluster/cc-ok:leaked-env.txt"], target)
    # The CLI and its children hold the broker's placeholder; the token stays with the broker.
    assert "ANTHROPIC_API_KEY=claude-cluster-placeholder-" in leaked and TOKEN not in leaked
    assert_nowhere((TOKEN,), tmp_path, state, target)
