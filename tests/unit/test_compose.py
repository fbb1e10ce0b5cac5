"""The compose cluster's parts without docker: ids from DNS names, the work directory, the
compose file as Compose reads it, and the agent's health check on real metrics."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cluster.agent.healthcheck import check, judge
from cluster.agent.metrics import Metrics
from cluster.cli import serve
from cluster.cli.client import work_dir
from cluster.compose import cluster
from cluster.compose.binary import find_binary
from cluster.compose.identity import agent_id, ptr_answer, ptr_query, reverse_lookup
from cluster.compose.workdir import KEY_OPTIONS, prepare
from cluster.deploy.image import UID
from cluster.errors import ConfigError
from cluster.health.compose import _engine_view, image_release
from cluster.health.model import HostFacts
from cluster.health.verdict import host_health
from cluster.state.records import Heartbeat
from tests.helpers import ROOT, git, poll


def _encode(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def _answer(query: bytes, target: str) -> bytes:
    """What Docker's DNS sends back: the question, then a PTR answer pointing at it (0xC00C)."""
    ident = struct.unpack("!H", query[:2])[0]
    header = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0)
    rdata = _encode(target)
    answer = struct.pack("!HHHIH", 0xC00C, 12, 1, 600, len(rdata)) + rdata
    return header + query[12:] + answer


@pytest.fixture
def dns_server() -> Iterator[tuple[str, int]]:
    """A UDP server on 127.0.0.1 answering every PTR query as Docker's DNS does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            sock.sendto(_answer(query, "ccc-x-agent-backend-2.ccc-x_default"), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()
    stop.set()
    thread.join()
    sock.close()


def test_a_reverse_lookup_gives_the_compose_name_and_the_replica_id(
        dns_server: tuple[str, int]) -> None:
    name = reverse_lookup("172.30.0.5", dns_server)
    assert name == "ccc-x-agent-backend-2.ccc-x_default"
    assert agent_id(name, "agent-backend") == "agent-backend-2"


def test_answers_to_another_query_or_with_an_error_are_not_names() -> None:
    query = ptr_query("10.0.0.1", 7)
    assert b"\x011\x010\x010\x0210\x07in-addr\x04arpa\x00" in query
    good = _answer(query, "p-agent-devops-11.p_default")
    assert ptr_answer(good, 7) == "p-agent-devops-11.p_default"
    assert ptr_answer(good, 8) is None
    failed = good[:3] + bytes([good[3] | 0x03]) + good[4:]  # NXDOMAIN
    assert ptr_answer(failed, 7) is None


@pytest.mark.parametrize("name", ["agent-backend-2", "ccc-agent-backend-x", "ccc-agent-testing-1",
                                  "ccc-agent-backend-", "d4f1a2b3c4d5"])
def test_a_name_not_of_the_service_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not a replica of service"):
        agent_id(name, "agent-backend")


def test_scale_specs() -> None:
    assert cluster.parse_scale("backend=3, agent-testing=2") == {
        "agent-backend": 3, "agent-testing": 2}
    assert cluster.parse_scale("") == {}
    for bad in ("backend", "ml=2", "backend=x"):
        with pytest.raises(ConfigError, match="expected SPECIALTY=N"):
            cluster.parse_scale(bad)


def test_the_work_dir_is_made_once_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "work"
    work = prepare(root, 2299, {"stop_grace_seconds": 5}, environ={"GITHUB_TOKEN": "ghp_x1234"})
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(work.secrets_env.stat().st_mode) == 0o600
    assert "GITHUB_TOKEN=ghp_x1234" in work.secrets_env.read_text()
    host = work.host_key.with_suffix(".pub").read_text().split()[:2]
    assert work.agents_known_hosts.read_text() == f"state {host[0]} {host[1]}\n"
    assert work.operator_known_hosts.read_text().startswith(f"[127.0.0.1]:2299 {host[0]} ")
    keys = work.authorized_keys.read_text().splitlines()
    assert len(keys) == 2 and all(line.startswith(f"{KEY_OPTIONS} ssh-ed25519 ") for line in keys)
    hook = (work.state_repo / "hooks" / "pre-receive").read_text()
    assert "CLUSTER_HOOK_PYTHON=/opt/claude-cluster/venv/bin/python" in hook
    assert git(["rev-parse", "main"], work.state_repo).strip()
    assert yaml.safe_load(work.agent_yaml.read_text())["stop_grace_seconds"] == 5
    assert cluster.stop_grace(work) == 5 + cluster.GRACE_MARGIN
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    prepare(root, 2299, {"stop_grace_seconds": 99}, environ={})
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_compose_reads_the_file_with_the_options_the_sandbox_needs(tmp_path: Path) -> None:
    settings = cluster.ComposeSettings(ROOT, project="ccc-unit", state_port=2298,
                                       work_dir=tmp_path / "work", image="img:1")
    prepare(settings.work.root, settings.state_port)
    doc = yaml.safe_load(cluster.compose(settings).run(["config"]))
    agents = {name: svc for name, svc in doc["services"].items() if name.startswith("agent-")}
    assert sorted(agents) == [f"agent-{s}" for s in sorted(cluster.SPECIALTIES)]
    for name, svc in agents.items():
        assert svc["environment"]["CLUSTER_COMPOSE_SERVICE"] == name
        assert svc["environment"]["CLUSTER_AGENT_SPECIALTIES"] == name.removeprefix("agent-")
        assert svc["image"] == "img:1" and svc["read_only"] and svc["cap_drop"] == ["ALL"]
        assert {"systempaths=unconfined", "apparmor=unconfined",
                f"seccomp={settings.work.seccomp}"} <= set(svc["security_opt"])
        assert svc["stop_grace_period"] == "1m0s"  # 30 s of agent grace + 30
        assert svc["healthcheck"]["test"] == ["CMD", "claude-cluster", "agent", "health"]
        assert svc["logging"]["options"]["max-size"] == "10m"
        assert svc["restart"] == "unless-stopped"
    state = doc["services"]["state"]
    assert [(p["host_ip"], p["published"]) for p in state["ports"]] == [("127.0.0.1", "2298")]
    assert "ANTHROPIC_API_KEY" not in json.dumps(doc)  # secrets.env holds none here


def test_compose_reads_the_dashboard_service(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    settings = cluster.ComposeSettings(ROOT, project="ccc-unit", state_port=2298,
                                       dashboard_port=8197, work_dir=tmp_path / "work",
                                       image="img:1")  # fmt: skip
    work = prepare(settings.work.root, settings.state_port)
    runner = cluster.compose(settings)
    doc = json.loads(runner.run(["config", "--format", "json"]))
    svc = doc["services"]["dashboard"]
    assert svc["command"] == ["claude-cluster", "serve", "--state",
                              "ssh://root@state/srv/state.git", "--bind", "0.0.0.0", "--port",
                              "8090", "--token-file", "/tmp/serve_token"]
    # The secret copied to a private 0600 file first, whoever owns the operator's file.
    assert svc["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert "install -m 0600 /run/secrets/serve_token /tmp/serve_token" in svc["entrypoint"][2]
    assert (svc["image"], svc["user"], svc["read_only"], svc["cap_drop"]) == (
        "img:1", f"{UID}:{UID}", True, ["ALL"])
    assert svc["security_opt"] == ["no-new-privileges:true"]  # no sandbox: docker's profiles
    assert svc["restart"] == "unless-stopped"
    assert svc["logging"] == doc["services"]["agent-backend"]["logging"]
    assert svc["depends_on"]["state"]["condition"] == "service_healthy"
    assert [(p["host_ip"], p["published"], p["target"]) for p in svc["ports"]] == [
        ("127.0.0.1", "8197", 8090)]
    agent = doc["services"]["agent-backend"]
    assert svc["environment"]["GIT_SSH_COMMAND"] == agent["environment"]["GIT_SSH_COMMAND"]
    assert {s["source"]: s["target"] for s in svc["secrets"]} == {
        name: f"/run/secrets/{name}" for name in ("agent_key", "known_hosts", "serve_token")}
    assert doc["secrets"]["serve_token"]["file"] == str(work.serve_token)
    # Its mirror of the state repo (<CLUSTER_WORKDIR>/serve) lands on a tmpfs of its user's.
    workdir = svc["environment"]["CLUSTER_WORKDIR"]
    mounts = {entry.split(":")[0]: entry for entry in svc["tmpfs"]}
    assert f"uid={UID}" in mounts[workdir] and "/tmp" in mounts
    monkeypatch.setenv("CLUSTER_WORKDIR", workdir)
    assert work_dir(serve.COMMAND).is_relative_to(workdir)
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and "127.0.0.1:8090/health" in test[3]
    # The token: in its file only, never in the compose file, its variables or the config.
    token = work.serve_token.read_text().strip()
    assert token not in json.dumps(doc)
    assert token not in cluster.COMPOSE_FILE.read_text()
    assert token not in json.dumps(dict(runner.variables))


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the token file is 0644 under "
                    "the 0700 work dir (the dashboard copies it to a 0600 file before serving)")
def test_the_serve_token_is_made_once_for_the_agent_user(tmp_path: Path) -> None:
    from cluster.serve.auth import MIN_TOKEN, read_token_file

    work = prepare(tmp_path / "work", 2299)
    info = work.serve_token.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == UID  # root here: theirs
    token = read_token_file(work.serve_token)  # the server's own check of the file
    assert len(token.reveal()) >= MIN_TOKEN
    prepare(tmp_path / "work", 2299)
    assert read_token_file(work.serve_token).reveal() == token.reveal()
    assert stat.S_IMODE(work.serve_token.stat().st_mode) == 0o600


def test_the_dashboards_healthcheck_reads_a_real_server(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's healthcheck command, its port moved to a free one, against
    ``claude-cluster serve`` over a real state repo with the token file prepare made."""
    from cluster.state.init import init_state_repo

    settings = cluster.ComposeSettings(ROOT, work_dir=tmp_path / "work", image="img:1")
    work = prepare(settings.work.root, 2299)
    doc = json.loads(cluster.compose(settings).run(["config", "--format", "json"]))
    test = doc["services"]["dashboard"]["healthcheck"]["test"]
    init_state_repo(tmp_path / "state.git")
    monkeypatch.setenv("CLUSTER_WORKDIR", str(tmp_path / "mirror"))
    server = serve.build_server(str(tmp_path / "state.git"), "127.0.0.1", 0, work.serve_token,
                                0.1)  # fmt: skip
    port = server.server_address[1]
    argv = [sys.executable if arg == "python" else arg.replace(":8090/", f":{port}/")
            for arg in test[1:]]  # fmt: skip

    def healthcheck() -> int:
        return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode

    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        poll(lambda: healthcheck() == 0, 30, "the healthcheck passing on /health")
    finally:
        server.shutdown()
        server.server_close()
        server.app.fleet.close()
    assert healthcheck() != 0  # nothing answers: unhealthy


def _heartbeat(state: str, last_seen: float) -> Heartbeat:
    return Heartbeat(id="a", host="h", pid=1, version="0", specialties=("backend",),
                     max_tasks=1, holding=(), state=state,  # type: ignore[arg-type]
                     started_at=last_seen, last_seen=last_seen, heartbeat_seconds=5.0)


def test_health_follows_the_last_accepted_heartbeat() -> None:
    from prometheus_client import generate_latest

    metrics = Metrics("a")
    now = time.time()
    assert judge(generate_latest(metrics.registry).decode(), now).reason == (
        "no heartbeat accepted yet")
    metrics.beat(_heartbeat("running", now - 4))
    assert judge(generate_latest(metrics.registry).decode(), now).healthy
    assert not judge(generate_latest(metrics.registry).decode(), now + 30).healthy
    metrics.beat(_heartbeat("paused", now))
    assert judge(generate_latest(metrics.registry).decode(), now).healthy
    metrics.beat(_heartbeat("blocked", now))
    said = judge(generate_latest(metrics.registry).decode(), now)
    assert (said.healthy, said.reason) == (False, "state blocked")


def test_the_health_command_reads_the_agents_port() -> None:
    metrics = Metrics("a")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not check(port, time.time()).healthy  # nothing serves yet
    server = metrics.serve(port)
    try:
        metrics.beat(_heartbeat("running", time.time()))
        done = subprocess.run([sys.executable, "-m", "cluster", "agent", "health", "--port",
                               str(port)], capture_output=True, text=True, timeout=60,
                              check=False)
        assert (done.returncode, done.stdout.split(":")[0]) == (0, "healthy"), done
        metrics.beat(_heartbeat("blocked", time.time()))
        done = subprocess.run([sys.executable, "-m", "cluster", "agent", "health"],
                              capture_output=True, text=True, timeout=60, check=False,
                              env={"CLUSTER_AGENT_METRICS_PORT": str(port), "PATH": "/usr/bin"})
        assert (done.returncode, done.stdout.strip()) == (1, "unhealthy: state blocked"), done
    finally:
        server.shutdown()


def test_the_compose_binary_is_v2() -> None:
    done = subprocess.run([str(find_binary()), "version", "--short"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.startswith("2."), done.stdout


def test_health_reads_the_release_from_the_image_tag() -> None:
    expected = "0.9.0-abc123"
    assert image_release(f"claude-cluster-agent:{expected}-base1-cli2", expected) == expected
    older = "claude-cluster-agent:0.8.0-fff000-base1-cli2"
    assert image_release(older, expected) == "0.8.0-fff000-base1-cli2"  # named, not matched
    assert image_release("localhost:5000/agent", expected) is None  # a port is not a tag
    assert image_release("", expected) is None


def test_health_judges_a_container_by_its_engine_state() -> None:
    running = {"State": {"Status": "running", "Health": {"Status": "healthy"}},
               "RestartCount": 2, "Config": {"Image": "x:1.0-h-b-c"}}
    view = _engine_view(running, "1.0-h")
    assert (view.service, view.restarts, view.release) == ("running", 2, "1.0-h")
    failing = {**running, "State": {"Status": "running", "Health": {"Status": "unhealthy"}}}
    assert _engine_view(failing, "1.0-h").service == "unhealthy"
    stopped = _engine_view({"State": {"Status": "exited"}, "Config": {}}, None)
    facts = HostFacts("agent-devops-1", "container", probe=stopped)
    judged = host_health(facts)
    # Degraded for what it is, not for the disk a stopped container was never measured on.
    assert (judged.status, [f.text for f in judged.findings]) == ("degraded",
                                                                  ["container exited"])


def test_health_of_a_project_without_containers_says_how_to_start_it(tmp_path: Path) -> None:
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "invoke"), "health", "--compose",
                           "--project", "ccc-no-such-project"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done
    assert "has no agent containers (start it with invoke compose.up)" in done.stderr, done
