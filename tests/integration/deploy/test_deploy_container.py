"""runtime: container: the agent image built offline, run through the docker SDK, verified.

The "container host" is this machine's own docker engine (test hosts run no docker inside);
its files live under a scratch directory that stands for the host's ``/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SECRETS, DeployEnv  # type: ignore[import-not-found]
from rich.console import Console

from cluster.deploy import testbed
from cluster.deploy.containerhost import container_name
from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.image import UID
from cluster.deploy.outcome import HostOutcome
from cluster.deploy.run import run
from cluster.state.client import Identity, StateClient
from cluster.state.submit import submit
from cluster.testhosts import engine
from cluster.testhosts.model import NETWORK

pytestmark = pytest.mark.integration
NAME = "ccc-deploy-ctr"
SPECIALTY = "docs"  # only the container agent serves it: the systemd agents serve backend


@pytest.fixture(scope="module")
def container_env(deploy_env: DeployEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    dict[str, Any]
]:  # fmt: skip
    base = tmp_path_factory.mktemp("container-host")
    inventory = base / "inventory"
    inventory.mkdir()
    hosts = {NAME: {"hostname": "127.0.0.1", "username": "root", "groups": ["containers"],
                    "data": {"runtime": "container", "specialties": [SPECIALTY],
                             "state_repo": deploy_env.state.agent_url}}}  # fmt: skip
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (inventory / "groups.yaml").write_text(yaml.safe_dump({"containers": {}}))
    overrides = {"inventory": inventory, "container_root": base / "root",
                 "container_network": NETWORK}  # fmt: skip
    try:
        yield overrides
    finally:
        for container in engine.client().containers.list(all=True, filters={"name": NAME}):
            container.remove(force=True)


def _deploy(env: DeployEnv, overrides: dict[str, Any]) -> HostOutcome:
    rest = dict(overrides)
    settings = testbed.testbed_settings(
        env.source, rest.pop("inventory"), env.work, env.state, **rest
    )
    outcomes = run(settings, Console(width=160, force_terminal=False), environ=SECRETS)
    assert [o.host for o in outcomes] == [NAME]
    return outcomes[0]


def test_a_container_agent_is_deployed_verified_works_and_redeploys_as_ok(
    deploy_env: DeployEnv, container_env: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first = _deploy(deploy_env, container_env)
    assert first.status == "changed", first.reason
    assert any(a.startswith("run: claude-cluster-agent:") for a in first.actions), first.actions

    container = engine.client().containers.get(container_name(NAME))
    host_config, config = container.attrs["HostConfig"], container.attrs["Config"]
    assert container.status == "running"
    assert host_config["ReadonlyRootfs"] is True
    assert "no-new-privileges:true" in host_config["SecurityOpt"]
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert config["User"] == f"{UID}:{UID}"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]  # from the host's secrets.env

    state = deploy_env.state
    reader = HeartbeatReader(state.control_url, tmp_path / "mirror.git", state.control_ssh_command)
    beat = reader.beat(NAME)
    assert beat is not None and beat.state == "running" and beat.host == NAME, beat

    monkeypatch.setenv("GIT_SSH_COMMAND", state.control_ssh_command)
    task = {"id": "ctr-cmd-1", "title": "say hello from a container", "specialty": SPECIALTY,
            "repo": "demo/sample", "executor": {"kind": "command", "command": "echo hi"},
            "verify": "true"}  # fmt: skip
    path = tmp_path / "ctr-cmd-1.yaml"
    path.write_text(yaml.safe_dump(task))
    client = StateClient(state.control_url, tmp_path / "client", Identity("tester"))
    try:
        submit(client, [path])
        deadline = time.monotonic() + 90
        while (result := client.snapshot().result("ctr-cmd-1")) is None:
            assert time.monotonic() < deadline, "no result for ctr-cmd-1 within 90s"
            time.sleep(0.5)
    finally:
        client.close()
    assert result.status == "succeeded" and result.agent == NAME, result

    again = _deploy(deploy_env, container_env)
    assert (again.status, again.actions) == ("ok", ())
