"""The hosted profile's push budget, with real agent processes on a real local state repo:
heartbeats ride on the claims' and results' pushes, leases cover the task, idle agents beat
at the idle interval, and the default profile's pushes are what they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster.state.checker import check
from cluster.state.records import ONLINE_BEATS, load_heartbeat
from tests.helpers import AgentProcess, commit_files, git, make_state, task_doc, task_files

TASKS = 60


def stopped(agent: AgentProcess) -> dict[str, Any]:
    event = agent.saw("stopped")
    assert event is not None, agent.tail()
    return event


def pushes(agents: list[AgentProcess]) -> dict[str, int]:
    total: dict[str, int] = {}
    for agent in agents:
        for kind, count in stopped(agent)["pushes"].items():
            total[kind] = total.get(kind, 0) + count
    return total


def run_batch(tmp_path: Path, agents: Any, settings: dict[str, Any], heartbeat: float,
              count: int = 2) -> tuple[Path, list[Any]]:
    state = make_state(tmp_path, settings)
    # Tasks of unequal lengths, as real ones are: agents that finish together race for the
    # next task (a refused claim is a push too), and equal lengths would keep them in step.
    docs = [task_doc(f"t{n:02d}", command=f"sleep {0.2 + 0.13 * (n % 5):.2f}")
            for n in range(TASKS)]
    commit_files(state, task_files(docs), tmp_path / "person")
    fleet = [agents(state, f"w{n}", exit_when_idle=True, lease=5, heartbeat=heartbeat)
             for n in range(count)]
    for agent in fleet:
        assert agent.wait(300) == 0, agent.tail()
    summary = check(state).summary()
    assert (summary["done"], summary["duplicated"], summary["lost"], summary["stale"]) == (
        TASKS, 0, 0, 0), summary
    return state, fleet


def refused(fleet: list[AgentProcess]) -> int:
    return sum(e["event"] == "claim_rejected" for a in fleet for e in a.events())


# Under the hosted profile --heartbeat is the idle interval (30 s here: longer than the batch,
# so that only the start-up beat goes out on its own).
HOSTED = {"profile": "hosted"}


def test_hosted_profile_one_agent_pushes_a_claim_and_a_result_per_task(
        tmp_path: Path, agents: Any) -> None:
    state, fleet = run_batch(tmp_path, agents, HOSTED, heartbeat=30, count=1)
    counted = pushes(fleet)
    # The start-up heartbeat, one claim and one result per task (each carrying the heartbeat),
    # the final fold and the stopped heartbeat: no renewal (a lease covers the task's timeout
    # plus the repo's lease) and no heartbeat of its own while busy.
    assert counted == {"heartbeat": 1, "claim": TASKS, "result": TASKS, "fold": 1, "stop": 1}
    assert sum(counted.values()) / TASKS <= 2.2
    sha = git(["rev-parse", "refs/agents/w0"], state).strip()
    beat = load_heartbeat(git(["show", f"{sha}:agent.yaml"], state).encode())
    assert beat.state == "stopped" and beat.holding == ()
    assert beat.beats_hour == 2  # the start-up beat and the stop: all else rode along


def test_hosted_profile_two_agents_stay_within_2_2_pushes_per_task(
        tmp_path: Path, agents: Any) -> None:
    _, fleet = run_batch(tmp_path, agents, HOSTED, heartbeat=30)
    counted = pushes(fleet)
    assert counted["result"] == TASKS and counted.get("renew", 0) == 0, counted
    # Claims two agents raced for and lost are pushes too; they are the claim path's to
    # make rare (bench/claims.py, bench/fleet.py count them), so they are told apart here.
    lost_races = refused(fleet)
    assert counted["claim"] == TASKS + lost_races, counted
    assert (sum(counted.values()) - lost_races) / TASKS <= 2.2, counted
    assert lost_races <= TASKS // 5, (lost_races, counted)


def test_idle_agents_beat_at_the_idle_rate(tmp_path: Path, agents: Any) -> None:
    # --heartbeat 1: under the hosted profile the interval an idle agent beats at.
    state = make_state(tmp_path, {"profile": "hosted"})
    fleet = [agents(state, f"idle{n}", lease=5, heartbeat=1) for n in range(2)]
    for agent in fleet:
        deadline_beats(agent, 4)
    for agent in fleet:
        agent.stop()
    for agent in fleet:
        event = stopped(agent)
        started = agent.saw("started")
        assert started is not None
        seconds = event["ts"] - started["ts"]
        kinds = event["pushes"]
        assert set(kinds) <= {"heartbeat", "stop"}, kinds  # nothing but beats while idle
        # One beat at start, then one per idle interval, and the stop.
        assert kinds["heartbeat"] <= seconds / 1.0 + 1, (kinds, seconds)
        assert kinds["heartbeat"] >= 4, kinds
        # What health counts: the last heartbeat says how many in-place pushes it made.
        sha = git(["rev-parse", f"refs/agents/{agent.id}"], state).strip()
        beat = load_heartbeat(git(["show", f"{sha}:agent.yaml"], state).encode())
        assert beat.beats_hour == kinds["heartbeat"] + kinds["stop"]
        assert beat.heartbeat_seconds == 1.0


def deadline_beats(agent: AgentProcess, count: int) -> None:
    """Wait (at most 60 s, failing loudly) until ``agent`` made ``count`` heartbeat pushes,
    read from the repo: its heartbeat's own ``beats_hour``."""
    import time

    argv = [str(arg) for arg in agent.proc.args]  # type: ignore[union-attr]
    state = Path(argv[argv.index("--state") + 1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = git(["for-each-ref", "--format=%(objectname)", f"refs/agents/{agent.id}"],
                    state).strip()
        if found:
            beat = load_heartbeat(git(["show", f"{found}:agent.yaml"], state).encode())
            if beat.beats_hour >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"{agent.id} made fewer than {count} heartbeats in 60 s:\n"
                         f"{agent.tail()}")


def test_default_profile_pushes_are_unchanged(tmp_path: Path, agents: Any) -> None:
    _, fleet = run_batch(tmp_path, agents, {"fold_delay_seconds": 0.2}, heartbeat=1, count=1)
    counted = pushes(fleet)
    # One push per claim attempt and per result, heartbeats (with renewals) on their own
    # interval, folds: no heartbeat rides on a claim or a result.
    assert counted["result"] == TASKS and counted["claim"] == TASKS, counted
    assert counted.get("heartbeat", 0) + counted.get("renew", 0) >= len(fleet), counted
    assert set(counted) <= {"claim", "result", "heartbeat", "renew", "fold", "stop"}
    for agent in fleet:
        seconds = stopped(agent)["ts"] - (agent.saw("started") or {"ts": 0})["ts"]
        beats = stopped(agent)["pushes"]
        in_place = beats.get("heartbeat", 0) + beats.get("renew", 0)
        # On their own interval (1 s), busy or not: at least often enough to stay online on
        # a loaded machine, where a beat's own push and loop delay lengthen each interval.
        assert in_place >= seconds / ONLINE_BEATS - 1, (beats, seconds)


def test_hosted_agent_notices_a_cancel_without_renewing(tmp_path: Path, agents: Any) -> None:
    import time

    from cluster.state.records import Result
    from tests.clients import state_client

    state = make_state(tmp_path, HOSTED)
    commit_files(state, task_files([task_doc("long", command="sleep 60")]), tmp_path / "person")
    agent = agents(state, "w0", lease=5, heartbeat=30)
    deadline = time.monotonic() + 60
    while agent.saw("claimed", "long") is None:
        assert time.monotonic() < deadline, agent.tail()
        time.sleep(0.1)
    with state_client(state, tmp_path, "operator", work="op") as person:
        snap = person.snapshot()
        tip = snap.claim_tip("long")
        cancel = Result(task="long", status="cancelled", attempt=1, agent="operator",
                        reason="cancelled by a person")
        assert person.write_terminal(snap, "long", cancel, tip)
    # Its lease (the task's 1800 s timeout and 5 s) is far off: the snapshot tells it.
    while agent.saw("claim_lost", "long") is None:
        assert time.monotonic() < deadline, agent.tail()
        time.sleep(0.1)
    agent.stop()
    assert stopped(agent)["pushes"].get("renew", 0) == 0
    assert check(state).tasks["long"][0] == "done"


def test_the_hosted_profile_fills_what_cluster_yaml_leaves_out() -> None:
    import pytest

    from cluster.errors import ValidationError
    from cluster.state.settings import HOSTED_DEFAULTS, RepoSettings, parse_settings

    hosted = parse_settings(b"profile: hosted\nfold_delay_seconds: 60.0\n")
    assert hosted.hosted and hosted.fold_delay_seconds == 60.0  # an explicit key wins
    assert hosted.lease_seconds == HOSTED_DEFAULTS["lease_seconds"]
    assert hosted.idle_heartbeat == HOSTED_DEFAULTS["idle_heartbeat_seconds"]
    assert hosted.renew_fraction == HOSTED_DEFAULTS["renew_fraction"]
    plain = parse_settings(b"{}\n")
    assert plain == RepoSettings() and not plain.hosted
    assert plain.idle_heartbeat == plain.heartbeat_seconds
    with pytest.raises(ValidationError, match="profile"):
        parse_settings(b"profile: github\n")
    with pytest.raises(ValidationError, match="renew_fraction"):
        parse_settings(b"profile: hosted\nrenew_fraction: 1.5\n")
