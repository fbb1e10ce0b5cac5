"""Health's parsing, the handshake limiter and retries, state summaries and rendering."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cluster.errors import HostError, HostKeyMismatch
from cluster.health.connect import HandshakeLimiter, open_connection
from cluster.health.model import HostFacts
from cluster.health.probe import parse_metrics, probe_argv, run_probe
from cluster.health.render import as_json, print_health
from cluster.health.verdict import fleet_health, host_health
from cluster.inventory import HostSpec
from cluster.ops.hosts import service_argv
from cluster.ops.logs import logs_argv
from cluster.units import layout

METRICS = """# HELP claude_cluster_tasks_running tasks
# TYPE claude_cluster_tasks_running gauge
claude_cluster_tasks_running 2.0
# TYPE claude_cluster_tasks_finished_total counter
claude_cluster_tasks_finished_total{status="succeeded",kind="result"} 3.0
claude_cluster_tasks_finished_total{status="failed",kind="release"} 1.0
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 9.0
"""
SEEN = {"service": "active", "restarts": 0, "release": "r", "disk_free": 1, "disk_total": 2,
        "mem_total": 4, "mem_available": 2, "load1": 0.1, "cpus": 2}  # fmt: skip


def spec(**changes: Any) -> HostSpec:
    body = {"name": "h1", "hostname": "10.0.0.1", "username": "u", "specialties": ["backend"],
            "state_repo": "ssh://git@s/r.git", "ssh_key_file": "/k", "known_hosts_file": "/kh"}
    return HostSpec.model_validate({**body, **changes})


def test_parse_metrics_sums_labels_and_drops_other_families():
    assert parse_metrics(METRICS) == {"tasks_running": 2.0, "tasks_finished_total": 4.0}


def test_run_probe_parses_and_reports_failures():
    out = json.dumps({**SEEN, "metrics_text": METRICS})
    probe = run_probe(lambda argv: (0, out, ""), "h1", "systemd", 9464)
    assert probe.service == "active" and probe.metrics == {"tasks_running": 2.0,
                                                           "tasks_finished_total": 4.0}
    with pytest.raises(HostError, match=r"health probe exited 1: boom"):
        run_probe(lambda argv: (1, "", "boom\n"), "h1", "systemd", None)
    with pytest.raises(HostError, match="unexpected"):
        run_probe(lambda argv: (0, "{", ""), "h1", "systemd", None)


def test_probe_argv_carries_the_port_and_runtime():
    argv = probe_argv("container", 9999, "h1")
    assert argv[:2] == ["python3", "-c"]
    assert json.loads(argv[3])["metrics_port"] == 9999
    assert json.loads(argv[3])["runtime"] == "container"


def test_every_verb_names_the_agent_container_as_deploy_does() -> None:
    name = layout.container_name("agent-1")
    assert name == "claude-cluster-agent-agent-1"
    assert json.loads(probe_argv("container", None, "agent-1")[3])["container"] == name
    for verb in ("start", "stop", "restart", "remove"):
        argv = service_argv("container", verb, "agent-1")
        assert argv[-1] == name, argv
    assert service_argv("container", "stop", "agent-1")[2:4] == ["--time", "90"]
    host = HostSpec(name="agent-1", hostname="127.0.0.1", username="root",
                    specialties=("backend",), state_repo="ssh://git@127.0.0.1/srv/state.git",
                    runtime="container")
    assert logs_argv(host, None, False, 20)[-1] == name


def test_transient_failures_are_retried_permanent_ones_are_not():
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise HostError("u@10.0.0.1:22", "connection closed by the remote end")
        return "conn"

    pauses: list[float] = []
    assert open_connection(spec(), HandshakeLimiter(), connector=flaky,
                           pause=pauses.append) == "conn"  # fmt: skip
    assert len(calls) == 3 and len(pauses) == 2 and all(p > 0 for p in pauses)

    def refused_login(*args: Any, **kwargs: Any) -> str:
        calls.append(1)
        raise HostError("u@10.0.0.1:22", "authentication failed: bad key")

    calls.clear()
    with pytest.raises(HostError, match=r"^h1: authentication failed"):
        open_connection(spec(), HandshakeLimiter(), connector=refused_login, pause=pauses.append)
    assert len(calls) == 1

    def changed_key(*args: Any, **kwargs: Any) -> str:
        raise HostKeyMismatch("u@10.0.0.1:22", "host key changed")

    with pytest.raises(HostKeyMismatch, match=r"^h1: host key changed"):
        open_connection(spec(), HandshakeLimiter(), connector=changed_key, pause=pauses.append)


def test_handshakes_per_target_are_capped():
    limiter = HandshakeLimiter(per_target=2)
    inside, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> str:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        release.wait(0.2)
        with lock:
            inside[0] -= 1
        return "conn"

    threads = [threading.Thread(target=open_connection,
                                args=(spec(name=f"h{i}", port=22 + i), limiter),
                                kwargs={"connector": slow}) for i in range(6)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2
    assert limiter.slot("10.0.0.1") is limiter.slot("10.0.0.1")


def test_render_table_and_json():
    fleet = fleet_health([host_health(HostFacts("h1", unreachable="connection refused"))], None)
    console = Console(width=200, record=True, force_terminal=False)
    print_health(console, fleet)
    text = console.export_text()
    assert "h1" in text and "unreachable: connection refused" in text
    assert "DOWN: 0/1 hosts healthy; down: h1" in text
    body = json.loads(as_json(fleet))
    assert body["exit_code"] == 2 and body["hosts"][0]["status"] == "down"


def test_missing_key_settings_are_a_config_error(tmp_path: Path):
    from cluster.errors import ConfigError

    with pytest.raises(ConfigError, match="ssh_key_file"):
        open_connection(spec(ssh_key_file=None), HandshakeLimiter())
