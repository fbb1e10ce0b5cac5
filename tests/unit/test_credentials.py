"""The model API credential: which executor takes which, its fingerprint (keyed, stable, one-way),
masking of the subscription token, deploy's choice of what to ship, the broker's view of a
refused credential, and how heartbeats, `status` and `health` show a paused or blocked fleet."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cluster.agent.build import build_sealer, credential_fingerprints, model_credentials
from cluster.agent.config import AgentConfig, SandboxConfig
from cluster.agent.credentials import (
    FINGERPRINT_KEY,
    MAX_PAUSE,
    fingerprint,
    shared_pause,
)
from cluster.agent.events import EventLog
from cluster.agent.executors.base import Budget
from cluster.cli.render import status_tables
from cluster.errors import SecretMissing
from cluster.health.model import HostFacts
from cluster.health.staterepo import summarise
from cluster.health.verdict import host_health, state_health
from cluster.sandbox.broker import Broker, Credential
from cluster.sandbox.sandboxes import default_sandboxes
from cluster.secret import Secret
from cluster.state.client import StateClient
from cluster.state.init import init_state_repo
from cluster.state.records import Heartbeat, load_heartbeat
from cluster.state.report import human_duration, status
from cluster.units.secrets_env import agent_needs, render_secrets_env
from tests.clients import state_client
from tests.fakes import FakeServer, Request, Response
from tests.helpers import ROOT

API_KEY = "sk-ant-api03-unit-test-key-0123456789abcdef0123456789abcdef"
TOKEN = "sk-ant-oat01-unit-test-token-0123456789abcdef0123456789abcdef"
ENV_NAMES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "CREDENTIALS_DIRECTORY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def config(tmp_path: Path, **settings: Any) -> AgentConfig:
    return AgentConfig.model_validate({"state": str(tmp_path / "s"), "id": "a1",
                                       "specialties": ["backend"], "workdir": tmp_path / "w",
                                       **settings})


def secrets_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


# -- the fingerprint ---------------------------------------------------------------------------

def test_the_fingerprint_is_keyed_stable_and_one_way() -> None:
    value = Secret(API_KEY)
    found = fingerprint("api_key", value)
    digest = found.removeprefix("hmac-sha256:")
    assert found.startswith("hmac-sha256:") and len(digest) == 32
    # Keyed: the project's HMAC, not a plain digest of the value a leak index could hold.
    keyed = hmac.new(FINGERPRINT_KEY, b"api_key\0" + API_KEY.encode(), hashlib.sha256)
    assert digest == keyed.hexdigest()[:32]
    for plain in (hashlib.sha256(API_KEY.encode()), hashlib.sha1(API_KEY.encode()),
                  hmac.new(b"another key", b"api_key\0" + API_KEY.encode(), hashlib.sha256)):
        assert plain.hexdigest()[:32] != digest
    # Not the value, nor any piece of it.
    assert all(API_KEY[i:i + 8] not in found for i in range(len(API_KEY) - 8))
    # Stable: another process (another host) computes the same.
    code = ("from cluster.agent.credentials import fingerprint; from cluster.secret import Secret;"
            f" print(fingerprint('api_key', Secret({API_KEY!r})))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, check=True, timeout=60).stdout.strip()
    assert other == found == fingerprint("api_key", Secret(API_KEY))


def test_fingerprints_differ_for_different_credentials_and_kinds() -> None:
    seen = {fingerprint("api_key", Secret(API_KEY)), fingerprint("api_key", Secret(API_KEY + "x")),
            fingerprint("api_key", Secret(TOKEN)), fingerprint("oauth", Secret(TOKEN)),
            fingerprint("oauth", Secret(API_KEY))}
    assert len(seen) == 5


# -- which executor takes which credential -----------------------------------------------------

def test_claude_code_takes_the_api_key_first_then_the_subscription_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cc = config(tmp_path, executors=["claude-code"])
    assert model_credentials(cc) == {}  # nothing set: no credential (the broker has no API)
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    assert model_credentials(cc) == {"claude-code": ("oauth", Secret(TOKEN))}
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    assert model_credentials(cc) == {"claude-code": ("api_key", Secret(API_KEY))}
    oauth = config(tmp_path, executors=["claude-code"], claude_code_credential="oauth")
    assert model_credentials(oauth) == {"claude-code": ("oauth", Secret(TOKEN))}
    assert credential_fingerprints(model_credentials(oauth)) == {
        "claude-code": fingerprint("oauth", Secret(TOKEN))}


def test_the_token_comes_from_the_secrets_file_too(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, CLAUDE_CODE_OAUTH_TOKEN=TOKEN)
    cc = config(tmp_path, executors=["claude-code"], claude_code_credential="oauth",
                secrets_file=path)
    assert model_credentials(cc) == {"claude-code": ("oauth", Secret(TOKEN))}


def test_the_sdk_executor_takes_no_subscription_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    with pytest.raises(SecretMissing) as caught:
        model_credentials(config(tmp_path, executors=["claude"]))
    assert "ANTHROPIC_API_KEY is not set" in str(caught.value)
    assert "only the claude-code executor takes it" in str(caught.value)
    assert TOKEN not in str(caught.value)
    with pytest.raises(SecretMissing, match="ANTHROPIC_API_KEY is not set"):
        model_credentials(config(tmp_path, executors=["claude-code"],
                                 claude_code_credential="api_key"))
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN")
    with pytest.raises(SecretMissing, match="CLAUDE_CODE_OAUTH_TOKEN is not set"):
        model_credentials(config(tmp_path, executors=["claude-code"],
                                 claude_code_credential="oauth"))


# -- masking -----------------------------------------------------------------------------------

def test_the_subscription_token_is_masked_in_events_logs_and_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TOKEN)
    cc = config(tmp_path, executors=["claude-code"], sandbox="off")
    sandboxes = default_sandboxes(tmp_path / "w" / "a1", SandboxConfig(mode="off"))
    sealer, held = build_sealer(cc, sandboxes, model_credentials(cc))
    assert sealer.credential == Credential("oauth", Secret(TOKEN)) and held == [Secret(TOKEN)]
    events = EventLog("a1", tmp_path / "events.jsonl", held)
    events.emit("oops", reason=f"the API said: bad token {TOKEN}")
    text = (tmp_path / "events.jsonl").read_text()
    assert TOKEN not in text and "bad token ***" in text
    rendered = render_secrets_env({"CLAUDE_CODE_OAUTH_TOKEN": Secret(TOKEN)})
    assert "CLAUDE_CODE_OAUTH_TOKEN=***" in rendered.masked and TOKEN not in rendered.masked
    assert TOKEN not in repr(rendered) and TOKEN not in repr(sealer)
    # With the sandbox off the CLI is given the token itself, under the CLI's own name.
    assert Credential("oauth", Secret(TOKEN)).environment() == {"CLAUDE_CODE_OAUTH_TOKEN": TOKEN}


# -- deploy: what a host gets ----------------------------------------------------------------

@pytest.mark.parametrize(("settings", "given", "shipped", "required"), [
    ({"executors": ["claude-code"]}, {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"},
     {"ANTHROPIC_API_KEY"}, set()),
    ({"executors": ["claude-code"]}, {"CLAUDE_CODE_OAUTH_TOKEN", "GITHUB_TOKEN"},
     {"CLAUDE_CODE_OAUTH_TOKEN"}, set()),
    ({"executors": ["claude-code"], "claude_code_credential": "oauth"},
     {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}, {"CLAUDE_CODE_OAUTH_TOKEN"},
     {"CLAUDE_CODE_OAUTH_TOKEN"}),
    ({"executors": ["claude", "claude-code"]}, {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"},
     {"ANTHROPIC_API_KEY"}, {"ANTHROPIC_API_KEY"}),
    ({"executors": ["claude", "claude-code"], "claude_code_credential": "oauth"},
     {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"},
     {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"},
     {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}),
    ({"executors": ["command"]}, {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}, set(), set()),
])
def test_deploy_ships_only_the_credential_the_agent_uses(
        tmp_path: Path, settings: dict[str, Any], given: set[str], shipped: set[str],
        required: set[str]) -> None:
    needs = agent_needs(config(tmp_path, **settings))
    secrets = {name: Secret(f"value-of-{name}") for name in given}
    assert set(needs.shipped(secrets)) == shipped
    assert set(needs.required) == required


# -- the broker and a refused credential -----------------------------------------------------

class Refusing(FakeServer):
    def handle(self, request: Request) -> Response:
        error = {"type": "authentication_error", "message": "OAuth token has expired."}
        return Response.json(401, {"type": "error", "error": error})


def refusal(broker: Broker) -> str | None:
    return broker.credential_refused


def test_the_broker_notes_a_refused_credential_and_tells_the_cli_not_to_retry(
        tmp_path: Path) -> None:
    lines: list[str] = []
    with Refusing() as upstream, Broker(upstream.url, Credential("oauth", Secret(TOKEN)),
                                        Budget(), log=lines.append) as broker:
        broker.start(tmp_path / "b.sock")
        assert refusal(broker) is None
        body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(tmp_path / "b.sock"))
            sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                         b"x-api-key: "
                         + broker.placeholder_key.encode()
                         + b"\r\nanthropic-version: 2023-06-01\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 401 ")
        assert b"\r\nx-should-retry: false\r\n" in answer.lower()
        assert "refused the OAuth token" in (refusal(broker) or "")
        sent = upstream.requests[-1].headers
        assert sent["authorization"] == f"Bearer {TOKEN}"  # the token itself went upstream
    assert any("refused the credential" in line for line in lines)
    assert all(TOKEN not in line for line in lines)


# -- the fleet's pause, from heartbeats --------------------------------------------------------

def beat(agent: str, now: float, **fields: Any) -> Heartbeat:
    base: dict[str, Any] = dict(id=agent, host="h", pid=1, version="0",
                                specialties=("backend",), max_tasks=1, holding=(),
                                state="running", started_at=now - 60, last_seen=now,
                                heartbeat_seconds=1.0)
    return Heartbeat(**{**base, **fields})


def test_a_pause_is_shared_by_fingerprint_and_bounded() -> None:
    now = time.time()
    mine, other = "hmac-sha256:" + "a" * 32, "hmac-sha256:" + "b" * 32
    paused = beat("a1", now, state="paused", paused_until=now + 30, paused_for=mine,
                  paused_by="a1", reason="usage limit", credentials=(mine,))
    found = shared_pause([paused], "a2", {mine}, now, skew=2.0)
    assert found is not None and (found.until, found.by, found.credential) == (
        now + 30, "a1", mine)
    assert shared_pause([paused], "a2", {other}, now, 2.0) is None  # another credential
    assert shared_pause([paused], "a1", {mine}, now, 2.0) is None  # its own
    own = beat("a1", now, state="paused", paused_until=now + 30)  # an older agent: not shared
    assert shared_pause([own], "a2", {mine}, now, 2.0) is None
    # Clock skew: the publisher's clock may be ahead; the pause holds for skew seconds more.
    assert shared_pause([paused], "a2", {mine}, now + 31, skew=2.0) is not None
    assert shared_pause([paused], "a2", {mine}, now + 33, skew=2.0) is None
    # A pause years away, even from a heartbeat left by a dead agent, ends MAX_PAUSE after it.
    far = beat("a1", now - 100, state="stopped", paused_until=now + 10 * 365 * 86400,
               paused_for=mine, paused_by="a1")
    capped = shared_pause([far], "a2", {mine}, now, 2.0)
    assert capped is not None and capped.until == now - 100 + MAX_PAUSE
    assert shared_pause([far], "a2", {mine}, now - 100 + MAX_PAUSE + 3, 2.0) is None
    # The latest of several wins; republished, it does not grow.
    later = beat("a3", now, paused_until=now + 60, paused_for=mine, paused_by="a1")
    found = shared_pause([paused, later], "a2", {mine}, now, 2.0)
    assert found is not None and found.until == now + 60


def test_old_heartbeats_still_parse_and_new_ones_round_trip() -> None:
    old = (b"kind: agent\nid: w1\nhost: h\npid: 3\nversion: '0.1'\nspecialties: [backend]\n"
           b"max_tasks: 1\nholding: []\nstate: paused\nstarted_at: '2026-01-01T00:00:00.000Z'\n"
           b"last_seen: '2026-01-01T00:00:05.000Z'\nheartbeat_seconds: 15\n"
           b"paused_until: '2026-01-01T00:01:00.000Z'\n")
    parsed = load_heartbeat(old)
    assert (parsed.credentials, parsed.paused_for, parsed.paused_by, parsed.reason) == (
        (), None, None, None)
    now = 1_800_000_000.0
    new = beat("a1", now, state="blocked", credentials=("hmac-sha256:" + "c" * 32,),
               reason="the model API refused the OAuth token", paused_until=now + 5,
               paused_for="hmac-sha256:" + "c" * 32, paused_by="a0")
    assert load_heartbeat(new.to_yaml()) == new


def _publish(repo: Path, tmp_path: Path, *beats: Heartbeat) -> StateClient:
    for item in beats:
        writer = state_client(repo, tmp_path, item.id, work=f"w-{item.id}")
        writer.renew([], item, None)
        writer.close()
    return state_client(repo, tmp_path)


def test_status_and_health_show_the_paused_fleet_and_the_blocked_agent(tmp_path: Path) -> None:
    repo = tmp_path / "state.git"
    init_state_repo(repo)
    now = time.time()
    fp = fingerprint("api_key", Secret(API_KEY))
    pause = dict(state="paused", paused_until=now + 90, paused_for=fp, paused_by="a1",
                 reason="executor: rate limited, retry after 90s", credentials=(fp,))
    reader = _publish(repo, tmp_path, beat("a1", now, **pause), beat("a2", now, **pause),
                      beat("b1", now, credentials=("hmac-sha256:" + "d" * 32,)),
                      beat("c1", now, state="blocked",
                           reason="the model API refused the OAuth token (401)"))
    snap = reader.snapshot()
    reader.close()
    report = status(snap, now)
    rows = {a["id"]: a for a in report["agent_detail"]}
    assert rows["a2"]["paused_by"] == "a1" and rows["a2"]["resumes_in_s"] == pytest.approx(90, 1)
    assert "paused_until" not in rows["b1"] and rows["c1"]["state"] == "blocked"
    assert [(g["credential"], g["agents"], g["met_by"]) for g in report["paused"]] == [
        (fp, ["a1", "a2"], "a1")]
    assert API_KEY not in json.dumps(report)
    console = Console(record=True, width=200)
    for table in status_tables(report):
        console.print(table)
    shown = console.export_text()
    assert "resumes in 1m" in shown or "resumes in 89s" in shown or "resumes in 90s" in shown
    assert "blocked: the model API refused the OAuth token" in shown

    facts = summarise(str(repo), snap, now)
    assert [(g.agents, g.met_by) for g in facts.paused] == [(("a1", "a2"), "a1")]
    state_notes = [f.text for f in state_health(facts).findings]
    assert any(t.startswith("usage window: 2 agent(s) paused (a1, a2, limit met by a1)")
               for t in state_notes), state_notes
    blocked = host_health(HostFacts("c1", agent=facts.agents["c1"], unreachable="x"))
    assert any(f.level == "degraded" and "refused the OAuth token" in f.text
               for f in blocked.findings)
    waiting = host_health(HostFacts("a2", agent=facts.agents["a2"], unreachable="x"))
    assert any(f.level == "note" and "limit met by a1" in f.text for f in waiting.findings)


def test_far_resumes_stay_readable() -> None:
    assert [human_duration(s) for s in (4, 150, 3 * 3600 + 300, 6 * 86400 + 7300, -5)] == [
        "4s", "2m", "3h05m", "6d02h", "0s"]
