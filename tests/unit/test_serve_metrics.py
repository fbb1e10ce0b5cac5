"""Fleet metrics of ``serve`` against a state repo written with a fleet's worth of state: every
number parsed back with prometheus_client's own parser and checked against the repo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.serve import AGENT_STATES, build_fleet
from cluster.serve import metrics
from cluster.serve.state import Fleet
from tests.clients import state_client

TASKS, AGENTS = 40, 14


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    now = time.time()
    made = build_fleet(tmp_path / "state.git", TASKS, AGENTS, now)
    reading = Fleet(state_client(tmp_path / "state.git", tmp_path, "serve"), refresh=60)
    yield reading, made, now
    reading.close()


def samples(text: bytes) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text.decode()):
        assert family.type == "gauge", family.name
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_every_fleet_metric_matches_the_repo(fleet: Any) -> None:
    reading, made, now = fleet
    view = reading.view()
    assert view is not None
    got = samples(view.metrics_text(metrics.render))
    tasks = {(s.labels["state"], s.labels["specialty"]): s.value
             for s in got["claude_cluster_fleet_tasks"]}
    assert sum(tasks.values()) == TASKS
    by_state: dict[str, float] = {}
    for (state, _), value in tasks.items():
        by_state[state] = by_state.get(state, 0) + value
    finished = made["archived"] + made["finished"]
    assert by_state == {"pending": made["pending"], "claimed": made["claimed"],
                        "stale": made["stale"], "released": made["released"],
                        "succeeded": finished * 3 / 4, "failed": finished / 4}
    assert {spec for _, spec in tasks} == {"backend", "frontend", "testing", "devops", "docs"}

    states = [AGENT_STATES[n % len(AGENT_STATES)] for n in range(AGENTS)]
    online = [n for n in range(AGENTS) if states[n] != "stopped" and n % 9 != 0]
    assert got["claude_cluster_fleet_agents_online"][0].value == len(online)
    agents = {s.labels["state"]: s.value for s in got["claude_cluster_fleet_agents"]}
    assert agents["offline"] == AGENTS - len(online)
    for state in ("running", "paused", "draining", "blocked"):
        assert agents[state] == sum(1 for n in online if states[n] == state), state
    assert agents["stopped"] == 0  # a stopped agent is never online: it counts as offline

    assert got["claude_cluster_fleet_stale_claims"][0].value == made["stale"]
    assert got["claude_cluster_fleet_invalid_tasks"][0].value == 0
    spent = made["released"] + made["finished"] + made["archived"]  # 0.01 each, one record
    assert got["claude_cluster_fleet_cost_usd_total"][0].value == pytest.approx(0.01 * spent)
    tokens = {s.labels["kind"]: s.value for s in got["claude_cluster_fleet_tokens_total"]}
    assert tokens == {"input": 1000 * spent, "output": 200 * spent}
    oldest = got["claude_cluster_fleet_oldest_pending_seconds"][0].value
    assert oldest == view.queue()["oldest_pending_age_s"]
    assert 0 <= oldest <= time.time() - now + 2  # the tasks landed with the builder's commit
    assert got["claude_cluster_fleet_read_timestamp_seconds"][0].value == view.snap.taken_at


def test_cost_counts_every_attempt_of_a_chain(tmp_path: Path) -> None:
    """A released attempt's cost stays in the total after the retry's result."""
    from cluster.state.client import Held
    from cluster.state.records import Release, Result
    from tests.helpers import commit_files, make_state, task_doc, task_files

    state = make_state(tmp_path, {"retry_backoff_seconds": 0})
    commit_files(state, task_files([task_doc("twice", max_attempts=2)]), tmp_path / "person")
    reading = Fleet(state_client(state, tmp_path, "serve"), refresh=0)
    try:
        with state_client(state, tmp_path, "writer") as writer:
            records: tuple[Release | Result, ...] = (
                    Release(task="twice", agent="writer", attempt=1, status="failed",
                            counted=True, reason="no", not_before=0.0, cost_usd=1.5,
                            input_tokens=10, output_tokens=1),
                    Result(task="twice", status="succeeded", attempt=2, agent="writer",
                           cost_usd=2.0, input_tokens=20, output_tokens=2))
            for attempt, record in enumerate(records, start=1):
                snap = writer.snapshot()
                held = writer.claim(snap, snap.tasks["twice"], 60)
                assert isinstance(held, Held) and held.claim.attempt == attempt
                assert writer.finish(held, record)
                view = reading.view()
                assert view is not None
                got = samples(view.metrics_text(metrics.render))
                cost = got["claude_cluster_fleet_cost_usd_total"][0].value
                assert cost == (1.5 if attempt == 1 else 3.5)
            writer.fold(writer.snapshot(), 10)
        view = reading.view()
        assert view is not None and "twice" in view.snap.archived
        assert view.totals == (3.5, 30, 3)  # read from the chain under the fold commit
    finally:
        reading.close()


def known_names(registry: Any) -> set[str]:
    """Every series name ``registry``'s metrics can expose (a labelled family with no child
    yet exposes nothing, but its names are fixed by its type)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count")}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_grafana_dashboard_uses_only_metrics_that_exist(fleet: Any) -> None:
    import json
    import re

    from cluster.agent.metrics import Metrics
    from tests.helpers import ROOT

    reading, _, _ = fleet
    view = reading.view()
    assert view is not None
    fleet_names = {s.name for family in text_string_to_metric_families(
        view.metrics_text(metrics.render).decode()) for s in family.samples}
    agent_names = known_names(Metrics("probe").registry)
    model = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert model["title"] and isinstance(model["schemaVersion"], int)
    exprs = [t["expr"] for p in model["panels"] if p["type"] != "row" for t in p["targets"]]
    assert exprs and all(p["gridPos"] for p in model["panels"])
    used = {name for expr in exprs for name in re.findall(r"claude_cluster_[a-z_]+", expr)}
    assert used - fleet_names - agent_names == set()
    assert {n for n in used if n.startswith("claude_cluster_fleet_")} and used & agent_names
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
