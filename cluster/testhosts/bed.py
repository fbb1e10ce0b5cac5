"""A deploy test bed: inventory and settings for test hosts and their state host."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cluster.deploy.settings import DeploySettings
from cluster.testhosts.model import HostSet
from cluster.testhosts.recipe import Recipe
from cluster.testhosts.statehost import StateHost

# Test hosts share this machine's cores and memory: the operator lowers the thresholds.
LOWERED = {"min_cpus": 1, "min_memory_gb": 0.5, "min_disk_gb": 1}
# Offline agents that answer fast: command tasks in a scratch directory, 1 s heartbeats.
AGENT = {"runner": "scratch", "heartbeat_seconds": 1.0, "poll_seconds": 1.0}
SECRETS = {"ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef", "GITHUB_TOKEN": "ghp_test01234567"}


def write_inventory(
    directory: Path,
    hosts: HostSet,
    state: StateHost,
    host_data: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """hosts.yaml (group ``agents``), groups.yaml and defaults.yaml for ``hosts``."""
    extra = host_data or {}
    docs = {
        "hosts": {
            h.name: {"hostname": "127.0.0.1", "port": h.port, "username": "root",
                     "groups": ["agents"], "data": dict(extra.get(h.name, {}))}
            for h in hosts.hosts
        },
        "groups": {"agents": {}},
        "defaults": {
            "data": {
                "state_repo": state.agent_url,
                "specialties": ["backend"],
                "ssh_key_file": str(hosts.paths.private_key),
                "known_hosts_file": str(hosts.paths.known_hosts),
                **LOWERED,
            }
        },
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def testbed_settings(
    root: Path, inventory: Path, work: Path, state: StateHost, **overrides: Any
) -> DeploySettings:
    """Settings for a deploy onto the test bed: the deploy key and how heartbeats are read."""
    base: dict[str, Any] = {
        "root": root, "inventory": inventory, "work_dir": work,
        "state_ssh_key": state.deploy_key, "state_known_hosts": state.agents_known_hosts,
        "state_url": state.control_url, "state_ssh_command": state.control_ssh_command,
        "agent": AGENT, "verify_timeout": 60.0, "container_base": agent_base(),
    }  # fmt: skip
    base.update(overrides)
    return DeploySettings(**base)


def agent_base() -> str:
    """The agent image's FROM on the test bed: the current recipe's test-host image (it has
    bubblewrap; an older cached one may not)."""
    return Recipe().image_tag()


def freeze_source(root: Path, target: Path) -> Path:
    """A copy of the project to build the release from: others' edits meanwhile must not make
    a new release in the middle of a test or a benchmark."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")
    shutil.copytree(root / "cluster", target / "cluster", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, target / name)
    return target
