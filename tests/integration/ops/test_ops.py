"""add-agent, health, remove-agent on real hosts: refusals, healthy, degraded, down, stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import OpsEnv  # type: ignore[import-not-found]

from cluster.errors import ValidationError
from cluster.health.model import FleetHealth, HostHealth
from cluster.inventory.edit import add_host, remove_host
from cluster.ops.addagent import NewAgent, add_agent
from cluster.state.submit import cancel, submit
from cluster.testhosts.bed import SECRETS
from cluster.units import layout
from tests.clients import state_client

pytestmark = pytest.mark.integration


def _host(fleet: FleetHealth, name: str) -> HostHealth:
    return next(h for h in fleet.hosts if h.name == name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ip": "300.1.2.3"}, "--ip '300.1.2.3' is not an IPv4 or IPv6 address"),
        ({"specialty": "cooking"}, "--specialty 'cooking' is unknown"),
        ({"name": "ccc-ops-1"}, "--name 'ccc-ops-1' is already a host"),
    ],
)
def test_bad_requests_are_refused_and_the_inventory_is_untouched(
    ops_env: OpsEnv, change: dict[str, str], message: str
):
    before = (ops_env.inventory / "hosts.yaml").read_bytes()
    request: dict[str, Any] = {"ip": "127.0.0.1", "specialty": "backend", "name": "ccc-ops-9"}
    request.update(change)
    with pytest.raises(ValidationError) as caught:
        add_agent(ops_env.settings(), NewAgent(**request), environ=SECRETS)
    assert message in str(caught.value)
    assert (ops_env.inventory / "hosts.yaml").read_bytes() == before


def test_add_agent_deploys_it_and_health_shows_it_healthy(deployed: OpsEnv):
    env = deployed
    second = env.hosts.hosts[1]
    outcome = add_agent(env.settings(), NewAgent("127.0.0.1", "backend", second.name,
                                                 port=second.port, user="root"),
                        environ=SECRETS)  # fmt: skip
    assert not outcome.deploy.failed, outcome.deploy.reason
    assert outcome.heartbeat.startswith("first heartbeat"), outcome.heartbeat
    assert second.name in (env.inventory / "hosts.yaml").read_text()
    fleet = env.wait_health(lambda f: f.status == "healthy")
    assert fleet.exit_code == 0
    host = _host(fleet, second.name)
    assert host.facts.probe is not None and host.facts.probe.service == "active"
    assert host.facts.probe.release == host.facts.expected_release
    assert host.facts.probe.metrics is not None  # read over SSH from the heartbeat's port
    assert "tasks_claimed_total" in host.facts.probe.metrics


def test_stopped_service_is_degraded_and_named(deployed: OpsEnv):
    env = deployed
    name = env.names[0]
    env.exec(name, ["systemctl", "stop", layout.UNIT_NAME])
    try:
        fleet = env.wait_health(lambda f: _host(f, name).status == "degraded")
        assert fleet.status == "degraded" and fleet.exit_code == 1
        assert f"degraded: {name}" in fleet.verdict
        assert any("unit inactive" in f.text for f in _host(fleet, name).findings)
    finally:
        env.exec(name, ["systemctl", "start", layout.UNIT_NAME])
    env.wait_health(lambda f: _host(f, name).status == "healthy")


def test_stale_claim_is_reported(deployed: OpsEnv, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    env = deployed
    monkeypatch.setenv("GIT_SSH_COMMAND", env.state.control_ssh_command)
    task = tmp_path / "ops-stale-1.yaml"  # docs: no agent here serves it, none takes it over
    task.write_text("id: ops-stale-1\ntitle: a stale claim\nspecialty: docs\nrepo: o/r\n"
                    "executor: {kind: command, command: 'true'}\n")  # fmt: skip
    person = state_client(env.state.control_url, tmp_path, "operator", work="person")
    submit(person, [task])
    holder = state_client(env.state.control_url, tmp_path, env.names[0], work="holder")
    snap = holder.snapshot()
    assert holder.claim(snap, snap.tasks["ops-stale-1"], lease=1.0) is not None
    try:
        fleet = env.wait_health(lambda f: f.state is not None and bool(f.state.facts.stale))
        assert fleet.state is not None and fleet.state.status == "degraded"
        assert [c.task for c in fleet.state.facts.stale] == ["ops-stale-1"]
        assert "state repo" in fleet.verdict
        findings = [f.text for f in _host(fleet, env.names[0]).findings]
        assert any("expired claim" in text and "ops-stale-1" in text for text in findings)
    finally:
        cancel(person, "ops-stale-1", "test over")
        person.close()
        holder.close()


def test_stopped_host_is_down_and_named(deployed: OpsEnv):
    env = deployed
    third = env.hosts.hosts[2]
    add_host(env.inventory, third.name, {"hostname": "127.0.0.1", "port": third.port,
                                         "username": "root"})  # fmt: skip
    try:
        env.exec(third.name, ["true"])
        from cluster.transport import docker

        docker.get(docker.client(), third.name).stop(timeout=5)
        fleet = env.health()
        host = _host(fleet, third.name)
        assert host.status == "down", host.findings
        assert fleet.status == "down" and fleet.exit_code == 2
        assert f"down: {third.name}" in fleet.verdict
        assert host.facts.unreachable
    finally:
        remove_host(env.inventory, third.name)
