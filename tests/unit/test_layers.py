"""Settings layers, the same for agent, deploy and backup: defaults < file < environment < flags."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.config import load_agent_config
from cluster.backup.settings import load_settings as backup_settings
from cluster.deploy.settings import load_settings as deploy_settings
from cluster.errors import ConfigError, ValidationError

Loader = Callable[[Mapping[str, Any], Mapping[str, str], "Path | None"], Any]
PLANES: dict[str, tuple[Loader, str, str, Any]] = {
    # plane: its loader, what its file must also say, the key tried, the key's default
    "agent": (lambda flags, env, path: load_agent_config(path, flags, env),
              "state: /srv/state.git\nid: a1\nspecialties: [backend]\n", "poll_seconds", 5.0),
    "deploy": (deploy_settings, "", "workers", 10),
    "backup": (backup_settings, "", "keep", 0),
}


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_every_plane_layers_defaults_file_environment_flags_in_that_order(
    plane: str, tmp_path: Path
) -> None:
    load, required, key, default = PLANES[plane]
    variable = f"CLUSTER_{plane.upper()}_{key.upper()}"
    path = tmp_path / f"{plane}.yaml"
    path.write_text(f"{required}{key}: 2\n")
    bare = tmp_path / "bare.yaml"
    bare.write_text(required or "{}\n")

    def value(flags: dict[str, Any], env: dict[str, str], file: Path | None = path) -> Any:
        return getattr(load(flags, env, file), key)

    assert value({}, {}, bare) == default
    assert value({}, {}) == 2  # the file beats the defaults
    assert value({}, {variable: "3"}) == 3  # the environment beats the file
    assert value({key: 4}, {variable: "3"}) == 4  # flags beat the environment
    assert value({key: None}, {variable: ""}) == 2  # None and "" are not given
    # With no path given, CLUSTER_<PLANE>_FILE names the file.
    assert value({}, {f"CLUSTER_{plane.upper()}_FILE": str(path)}, None) == 2


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_every_plane_names_its_file_in_errors(plane: str, tmp_path: Path) -> None:
    load, required, _, _ = PLANES[plane]
    path = tmp_path / f"{plane}.yaml"
    path.write_text(f"{required}colour: red\n")
    with pytest.raises(ValidationError, match="'colour': Extra inputs are not permitted") as bad:
        load({}, {}, path)
    assert bad.value.where == str(path)
    with pytest.raises(ConfigError, match=f"cannot read {plane} config"):
        load({}, {}, tmp_path / "missing.yaml")


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
