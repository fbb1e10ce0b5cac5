"""The agent's Prometheus endpoint, scraped over HTTP from a real agent process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import (
    commit_files,
    free_port,
    make_state,
    poll,
    scrape,
    task_doc,
    task_files,
)


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
