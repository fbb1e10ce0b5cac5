"""A hosted state repo's push rate over the last hour, as health reads it from the repo."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from cluster.health.model import StateFacts
from cluster.health.staterepo import HOUR, pushes_last_hour, read_state_facts
from cluster.health.verdict import state_health
from cluster.state.client import Held, StateClient
from cluster.state.init import init_state_repo
from cluster.state.records import Heartbeat, Result
from cluster.state.submit import submit
from tests.clients import state_client

TASK = ("id: {id}\ntitle: t\nspecialty: backend\nrepo: o/r\n"
        "executor: {{kind: command, command: 'true'}}\n")


def heartbeat(agent: str, beats: int) -> Heartbeat:
    now = time.time()
    return Heartbeat(id=agent, host="h", pid=1, version="0", specialties=("backend",),
                     max_tasks=1, holding=(), state="running", started_at=now, last_seen=now,
                     heartbeat_seconds=600.0, beats_hour=beats)


def busy_repo(tmp_path: Path, settings: bytes) -> tuple[Path, int]:
    """A repo where one person submitted, one agent claimed and finished two tasks and two
    agents beat; returns it and the pushes that took (each write below is one push)."""
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=settings)
    pushes = 1  # the initial commit on main
    with state_client(repo, tmp_path, "operator", work="person") as person, \
            state_client(repo, tmp_path, "web-1", work="web") as agent:
        return repo, pushes + _work(tmp_path, person, agent)


def _work(tmp_path: Path, person: StateClient, agent: StateClient) -> int:
    pushes = 0
    files = []
    for key in ("t1", "t2", "t3"):
        path = tmp_path / f"{key}.yaml"
        path.write_text(TASK.format(id=key))
        files.append(path)
    submit(person, files)
    pushes += 1
    for key in ("t1", "t2"):
        snap = agent.snapshot()
        held = agent.claim(snap, snap.tasks[key], lease=600.0)
        assert isinstance(held, Held)
        assert agent.finish(held, Result(task=key, status="succeeded", attempt=1, agent="web-1"))
        pushes += 2
    beats = {"web-1": 7, "web-2": 3}  # heartbeats and renewals each agent says it pushed
    for name, count in beats.items():
        _, _, tip = agent.renew([], heartbeat(name, count), None)
        assert tip is not None
        pushes += count
    return pushes


def test_push_rate_is_the_commits_and_beats_of_the_last_hour(tmp_path: Path) -> None:
    repo, pushes = busy_repo(tmp_path, b"profile: hosted\n")
    facts = read_state_facts(str(repo), tmp_path / "health")
    assert facts.reachable, facts.error
    assert facts.pushes_last_hour == pushes
    assert facts.push_budget == 6.0
    health = state_health(facts)
    rate = pushes / 60
    assert [f.text for f in health.findings] == [
        f"push rate {rate:.1f}/min over the last hour, budget 6/min"]
    assert health.findings[0].level == "note" and health.status == "healthy"


def test_the_finding_warns_near_and_degrades_over_the_budget(tmp_path: Path) -> None:
    repo, pushes = busy_repo(tmp_path, b"profile: hosted\npush_budget_per_minute: 0.1\n")
    facts = read_state_facts(str(repo), tmp_path / "health")
    assert facts.pushes_last_hour == pushes and pushes / 60 > 0.1
    over = state_health(facts)
    assert over.status == "degraded"
    assert over.findings[0].text.startswith(
        f"push rate {pushes / 60:.1f}/min over the last hour, budget 0.1/min: over the budget")
    near = state_health(dataclasses.replace(facts, push_budget=pushes / 60 / 0.9))
    assert near.status == "healthy" and "close to the budget" in near.findings[0].text
    at = state_health(dataclasses.replace(facts, push_budget=pushes / 60))
    assert at.status == "healthy"  # at the budget is not over it


def test_commits_older_than_an_hour_do_not_count(tmp_path: Path) -> None:
    repo, pushes = busy_repo(tmp_path, b"profile: hosted\n")
    with state_client(repo, tmp_path, work="late") as reader:
        snap = reader.snapshot()
        assert pushes_last_hour(reader.remote, snap, time.time()) == pushes
        # An hour and more later, nothing of it is in the window.
        assert pushes_last_hour(reader.remote, snap, time.time() + HOUR + 5) == 0


def test_the_default_profile_has_no_budget(tmp_path: Path) -> None:
    repo, _ = busy_repo(tmp_path, b"{}\n")
    facts: StateFacts = read_state_facts(str(repo), tmp_path / "health")
    assert facts.reachable and facts.push_budget is None and facts.pushes_last_hour is None
    assert not any("push rate" in f.text for f in state_health(facts).findings)
