"""The agent's Prometheus endpoint, scraped over HTTP from a real agent process."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import commit_files, make_state, poll, task_doc, task_files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def test_agent_serves_task_counters(tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2, "retry_backoff_seconds": 0.1})
    docs = [task_doc("ok-1"), task_doc("ok-2"), task_doc("bad", command="exit 1", max_attempts=1)]
    commit_files(repo, task_files(docs), tmp_path / "person")
    port = free_port()
    agent = agents(repo, "metered", extra=["--metrics-port", str(port)])
    poll(lambda: agent.saw("metrics"), 30, "the metrics endpoint to start")
    done = poll(lambda: (v := scrape(port)).get(
        "claude_cluster_tasks_finished_total{kind=result,status=failed}") == 1
        and v.get("claude_cluster_tasks_finished_total{kind=result,status=succeeded}") == 2
        and v, 60, lambda: f"three finished tasks in {scrape(port)}")
    assert done["claude_cluster_tasks_claimed_total"] == 3
    assert done["claude_cluster_attempt_duration_seconds_count"] == 3
    assert done["claude_cluster_agent_info{agent=metered,version=0.1.0}"] == 1
