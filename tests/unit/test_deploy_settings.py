"""Deploy settings from the environment, and the agents' optional ssh multiplexing file."""

from __future__ import annotations

import pytest

from cluster.deploy.heartbeats import multiplexed
from cluster.deploy.settings import load_settings
from cluster.errors import ValidationError


def test_agent_keys_come_from_the_environment_as_json() -> None:
    environ = {"CLUSTER_DEPLOY_AGENT": '{"poll_seconds": 2}', "CLUSTER_DEPLOY_BATCH": "2"}
    settings = load_settings({"tags": "config,service"}, environ)
    assert settings.agent == {"poll_seconds": 2}
    assert (settings.batch, settings.tags) == (2, ("config", "service"))


def test_bad_agent_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="agent: not JSON"):
        load_settings({}, {"CLUSTER_DEPLOY_AGENT": "{poll"})


def test_the_heartbeat_reader_multiplexes_only_ssh() -> None:
    command = multiplexed("ssh -i key -o BatchMode=yes", "/tmp/ccc-hb-x")
    assert command.startswith("ssh -i key -o BatchMode=yes -o ControlMaster=auto")
    assert "ControlPath=/tmp/ccc-hb-x/%C" in command
    assert multiplexed("plink -batch", "/tmp/x") == "plink -batch"
