"""Settings layers, the same for agent, deploy and backup: defaults < environment < flags."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cluster.agent.config import load_agent_config
from cluster.backup.settings import load_settings as backup_settings
from cluster.deploy.settings import load_settings as deploy_settings
from cluster.errors import ValidationError


def test_flags_beat_the_environment_and_empty_means_not_given() -> None:
    environ = {"CLUSTER_DEPLOY_WORKERS": "7", "CLUSTER_DEPLOY_BATCH": "2",
               "CLUSTER_DEPLOY_INVENTORY": ""}  # fmt: skip
    settings = deploy_settings({"batch": 3, "limit": None}, environ)
    assert (settings.workers, settings.batch, str(settings.inventory)) == (7, 3, "inventory")
    agent = load_agent_config(None, {"id": "a1", "state": "/srv/state.git", "model": None,
                                     "specialties": "backend"},
                              {"CLUSTER_AGENT_MODEL": "claude-opus-4-1",
                               "CLUSTER_AGENT_POLL_SECONDS": ""})  # fmt: skip
    assert (agent.model, agent.poll_seconds) == ("claude-opus-4-1", 5.0)


BAD_AGENT = {"id": "Bad Id", "state": "/s", "specialties": "docs"}


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (lambda: deploy_settings({"workers": 0}, {}), "deploy settings: 'workers': Input should"),
        (lambda: backup_settings({}, {"CLUSTER_BACKUP_NOPE": "1", "CLUSTER_BACKUP_KEEP": "x"}),
         "backup settings: 'keep'"),
        (lambda: load_agent_config(None, BAD_AGENT, {}),
         "agent settings: 'id': unsafe agent id 'Bad Id'"),
    ],
)
def test_each_bad_key_is_named_where_it_came_from(
    load: Callable[[], object], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        load()
    assert expected in str(caught.value)
