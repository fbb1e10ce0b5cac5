"""Deploy settings from a file and the environment, their typed agent keys, and the agents'
optional ssh multiplexing file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.agent_schema import AgentOverrides, SandboxConfig
from cluster.deploy.heartbeats import multiplexed
from cluster.deploy.settings import DeploySettings, load_settings
from cluster.errors import ValidationError
from cluster.inventory.model import HostSpec
from cluster.units.agent_yaml import agent_config


def test_agent_keys_come_from_the_environment_as_json() -> None:
    environ = {"CLUSTER_DEPLOY_AGENT": '{"poll_seconds": 2}', "CLUSTER_DEPLOY_BATCH": "2"}
    settings = load_settings({"tags": "config,service"}, environ)
    assert settings.agent == {"poll_seconds": 2}
    assert (settings.batch, settings.tags) == (2, ("config", "service"))


def test_bad_agent_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="agent: not JSON"):
        load_settings({}, {"CLUSTER_DEPLOY_AGENT": "{poll"})


@pytest.mark.parametrize(("agent", "problem"), [
    ("{poll_seconds: 0}", "'agent.poll_seconds': Input should be greater than or equal to 0.05"),
    ("{colour: red}", "'agent.colour': Extra inputs are not permitted"),
    ("{sandbox: {mode: loose}}", "'agent.sandbox.mode': Input should be 'bwrap' or 'off'"),
    ("{executors: [claude, shell]}", "'agent.executors.1': Input should be 'claude'"),
    ("[poll_seconds]", "'agent': expected a mapping of agent settings"),
])
def test_a_bad_agent_key_in_the_deploy_file_is_refused_by_name(
    tmp_path: Path, agent: str, problem: str
) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(f"workers: 4\nagent: {agent}\n")
    with pytest.raises(ValidationError) as caught:
        load_settings({}, {}, path)
    assert caught.value.where == str(path) and problem in str(caught.value)


def test_agent_keys_are_typed_as_the_agent_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("agent:\n  executors: claude,command\n  sandbox: off\n  max_tasks: 2\n")
    settings = load_settings({}, {"CLUSTER_DEPLOY_FILE": str(path)})
    assert isinstance(settings.agent, AgentOverrides) and len(settings.agent) == 3
    assert settings.agent["executors"] == ("claude", "command")
    assert settings.agent["sandbox"] == SandboxConfig(mode="off")
    host = HostSpec(name="web-1", hostname="192.0.2.10", username="deploy",
                    specialties=("backend",), state_repo="ssh://git@192.0.2.1/srv/state.git")
    config = agent_config(host, **settings.agent)  # only the keys given override the host's
    assert (config.id, config.max_tasks, config.sandbox.mode) == ("web-1", 2, "off")
    # The environment's agent object replaces the file's whole (keys are not merged).
    again = load_settings({}, {"CLUSTER_DEPLOY_FILE": str(path),
                               "CLUSTER_DEPLOY_AGENT": '{"poll_seconds": 3}'})
    assert again.agent == {"poll_seconds": 3}
    assert DeploySettings().agent == {}
    scratch = AgentOverrides({"runner": "scratch"})
    assert DeploySettings(agent=scratch).agent == {"runner": "scratch"}
    with pytest.raises(ValueError, match="lease_seconds"):
        AgentOverrides({"lease_seconds": 0})


def test_the_heartbeat_reader_multiplexes_only_ssh() -> None:
    command = multiplexed("ssh -i key -o BatchMode=yes", "/tmp/ccc-hb-x")
    assert command.startswith("ssh -i key -o BatchMode=yes -o ControlMaster=auto")
    assert "ControlPath=/tmp/ccc-hb-x/%C" in command
    assert multiplexed("plink -batch", "/tmp/x") == "plink -batch"
