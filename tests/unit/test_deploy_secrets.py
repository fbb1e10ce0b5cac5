"""Deploy asks only for the secrets the selected agents use, and refuses before touching a host."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from cluster.agent_schema import AgentOverrides
from cluster.deploy.run import check_secrets, collect_secrets, run
from cluster.deploy.settings import DeploySettings
from cluster.errors import ConfigError, SecretMissing
from cluster.inventory import load_inventory

HOSTS = """
a: {hostname: 127.0.0.1, port: 1, groups: [backend]}
b: {hostname: 127.0.0.1, port: 2, groups: [backend]}
"""
GROUPS = "backend:\n  data: {specialties: [backend]}\n"
DEFAULTS = "username: root\ndata:\n  state_repo: ssh://git@127.0.0.1:1/srv/state.git\n"


def settings(tmp_path: Path, **agent: Any) -> DeploySettings:
    inventory = tmp_path / "inventory"
    inventory.mkdir(exist_ok=True)
    for name, text in (("hosts", HOSTS), ("groups", GROUPS), ("defaults", DEFAULTS)):
        (inventory / f"{name}.yaml").write_text(textwrap.dedent(text))
    return DeploySettings(root=tmp_path, inventory=inventory, work_dir=tmp_path / "work",
                          agent=AgentOverrides(agent))  # fmt: skip


def test_a_missing_secret_stops_the_run_before_any_host_or_build(tmp_path: Path) -> None:
    s = settings(tmp_path, forge="github", executors=["command"])
    with pytest.raises(SecretMissing) as caught:
        run(s, environ={"ANTHROPIC_API_KEY": "sk-ant-unused-here"})
    assert str(caught.value) == (
        "GITHUB_TOKEN is not set (looked in the environment): forge: github needs it on a, b"
    )
    assert not (s.work_dir / "wheels").exists()  # nothing was built, no host was dialled
    with pytest.raises(SecretMissing):  # and the deploy lock was let go
        run(s, environ={})


def test_agents_that_use_no_secret_need_none(tmp_path: Path) -> None:
    s = settings(tmp_path)  # command executor, local forge
    hosts = load_inventory(s.inventory).hosts
    assert collect_secrets(s, {}) == {}
    check_secrets(s, hosts, {})  # nothing to ask for


def test_the_secrets_file_provides_what_the_environment_lacks(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# deploy secrets\nANTHROPIC_API_KEY=sk-ant-from-file\n")
    secrets.chmod(0o600)
    s = settings(tmp_path, executors=["claude"]).model_copy(update={"secrets_file": secrets})
    found = collect_secrets(s, {"GITHUB_TOKEN": "ghp_from_env"})
    assert {k: v.reveal() for k, v in found.items()} == {
        "ANTHROPIC_API_KEY": "sk-ant-from-file",
        "GITHUB_TOKEN": "ghp_from_env",
    }
    check_secrets(s, load_inventory(s.inventory).hosts, found)
    with pytest.raises(SecretMissing, match=f"ANTHROPIC_API_KEY is not set .*{secrets}.*claude"):
        check_secrets(s, load_inventory(s.inventory).hosts, {})


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("GITHUB_TOKEN=ghp_world_readable\n")
    secrets.chmod(0o644)
    s = settings(tmp_path, forge="github").model_copy(update={"secrets_file": secrets})
    with pytest.raises(ConfigError, match="must be readable by its owner only") as caught:
        run(s, environ={})
    assert "ghp_world_readable" not in str(caught.value)
    assert not (s.work_dir / "wheels").exists()
