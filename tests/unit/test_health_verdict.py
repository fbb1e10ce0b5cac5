"""The pure verdict: facts -> per-host status -> fleet verdict and exit code."""

from __future__ import annotations

from dataclasses import replace

from cluster.health.model import AgentView, HostFacts, HostHealth, HostProbe, StaleClaim, StateFacts
from cluster.health.verdict import Limits, fleet_health, host_health, state_health, worst

GB = 10**9
PROBE = HostProbe(service="active", restarts=0, release="0.1.0-abc", disk_free=50 * GB,
                  disk_total=100 * GB, mem_total=16 * GB, mem_available=8 * GB, load1=0.5,
                  cpus=4)  # fmt: skip
AGENT = AgentView(heartbeat_age=1.0, heartbeat_seconds=5.0, state="running", holding=("t1",))


def facts(**changes: object) -> HostFacts:
    base = HostFacts("web-1", "systemd", "0.1.0-abc", None, PROBE, AGENT)
    return replace(base, **changes)  # type: ignore[arg-type]


def texts(health: HostHealth) -> list[str]:
    return [f.text for f in health.findings]


def test_all_good_is_healthy():
    health = host_health(facts())
    assert health.status == "healthy" and health.findings == ()


def test_unreachable_is_down_with_the_reason():
    health = host_health(facts(unreachable="connection refused", probe=None))
    assert health.status == "down"
    assert texts(health)[0] == "unreachable: connection refused"


def test_inactive_unit_is_degraded_and_container_runtime_wants_running():
    assert texts(host_health(facts(probe=replace(PROBE, service="inactive")))) == ["unit inactive"]
    running = host_health(facts(runtime="container", probe=replace(PROBE, service="running")))
    assert running.status == "healthy"
    exited = host_health(facts(runtime="container", probe=replace(PROBE, service="exited")))
    assert exited.status == "degraded" and texts(exited) == ["container exited"]


def test_restarts_are_a_note_until_the_limit():
    assert host_health(facts(probe=replace(PROBE, restarts=1))).status == "healthy"
    flapping = host_health(facts(probe=replace(PROBE, restarts=3)))
    assert flapping.status == "degraded" and "restarted 3 times" in texts(flapping)


def test_wrong_release_disk_and_memory_degrade():
    old = host_health(facts(probe=replace(PROBE, release="0.0.9-old")))
    assert texts(old) == ["release 0.0.9-old, expected 0.1.0-abc"]
    assert host_health(facts(expected_release=None,
                             probe=replace(PROBE, release="x"))).status == "healthy"  # fmt: skip
    full = host_health(facts(probe=replace(PROBE, disk_free=GB // 2)))
    assert full.status == "degraded" and texts(full)[0].startswith("disk 0.5 GB free")
    tight = host_health(facts(probe=replace(PROBE, mem_available=GB // 4)))
    assert texts(tight) == ["memory 2% available"]
    busy = host_health(facts(probe=replace(PROBE, load1=9.0)))
    assert busy.status == "healthy" and texts(busy) == ["load 9.0 on 4 CPU(s)"]


def test_heartbeat_missing_old_or_stopped_degrades():
    assert texts(host_health(facts(agent=AgentView(None)))) == ["no heartbeat in the state repo"]
    old = host_health(facts(agent=replace(AGENT, heartbeat_age=16.0)))
    assert texts(old) == ["last heartbeat 16s ago"]
    assert host_health(facts(agent=replace(AGENT, heartbeat_age=14.0))).status == "healthy"
    stopped = host_health(facts(agent=replace(AGENT, state="stopped")))
    assert texts(stopped) == ["agent says it stopped"]
    loose = Limits(heartbeat_intervals=10)
    assert host_health(facts(agent=replace(AGENT, heartbeat_age=16.0)), loose).status == "healthy"


def test_an_unsealed_agent_is_called_out():
    health = host_health(facts(agent=replace(AGENT, sandbox="off")))
    assert texts(health) == ["sandbox off: its task code runs unsealed, with the agent's rights "
                             "and credentials"]
    assert [f.level for f in health.findings] == ["note"]


def test_expired_claims_held_degrade_the_holder():
    health = host_health(facts(agent=replace(AGENT, expired=("t9",))))
    assert health.status == "degraded" and texts(health) == ["holds 1 expired claim(s): t9"]


def test_state_repo_unreachable_is_down_stale_is_degraded_invalid_is_a_note():
    assert state_health(StateFacts("u", error="timed out")).status == "down"
    stale = state_health(StateFacts("u", stale=(StaleClaim("t1", "web-1", 12.0),)))
    assert stale.status == "degraded"
    assert stale.findings[0].text == "stale claim t1 (held by web-1, expired 12s ago)"
    invalid = state_health(StateFacts("u", invalid=("bad",), oldest_pending_age=7200.0))
    assert invalid.status == "healthy"
    assert [f.text for f in invalid.findings] == ["1 invalid task(s): bad",
                                                  "oldest pending task waits for 120 min"]


def test_state_facts_agent_view_is_none_only_when_unreadable():
    assert StateFacts("u", error="x").agent("a") is None
    assert StateFacts("u").agent("a") == AgentView(None)


def test_fleet_is_the_worst_and_the_verdict_names_hosts():
    good = host_health(facts(name="a"))
    slow = host_health(facts(name="b", probe=replace(PROBE, service="failed")))
    gone = host_health(facts(name="c", unreachable="timed out", probe=None))
    fleet = fleet_health([good, slow, gone], state_health(StateFacts("u")))
    assert fleet.status == "down" and fleet.exit_code == 2
    assert fleet.verdict == "DOWN: 1/3 hosts healthy; down: c; degraded: b"
    calm = fleet_health([good], state_health(StateFacts("u")))
    assert (calm.status, calm.exit_code) == ("healthy", 0)
    assert calm.verdict == "HEALTHY: 1/1 hosts healthy"
    broken_state = fleet_health([good], state_health(StateFacts("u", error="refused")))
    assert broken_state.exit_code == 2 and "down: state repo" in broken_state.verdict
    assert fleet_health([slow], None).exit_code == 1


def test_worst():
    assert worst([]) == "healthy"
    assert worst(["note", "healthy"]) == "healthy"
    assert worst(["degraded", "note"]) == "degraded"
