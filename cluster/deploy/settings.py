"""Deploy settings, one typed object layered by cluster.layers: defaults < file (a YAML file of
these keys, named by ``CLUSTER_DEPLOY_FILE``) < CLUSTER_DEPLOY_* environment < flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cluster import layers
from cluster.agent_schema import AgentOverrides

TAGS = ("preflight", "code", "config", "service")


class DeploySettings(BaseModel):
    """Everything a deploy run needs besides the inventory's hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(default_factory=Path.cwd)  # the project: wheels are built from it
    inventory: Path = Path("inventory")
    work_dir: Path = layers.WORK_DIR  # wheel cache, deploy lock, state-repo mirror
    secrets_file: Path | None = None  # KEY=VALUE, mode 0600; the environment wins over it
    state_ssh_key: Path | None = None  # deploy key the agents reach an ssh:// state repo with
    state_known_hosts: Path | None = None  # the state host's key, as the agents see it
    state_url: str | None = None  # how the control host reads heartbeats (default: each host's)
    state_ssh_command: str | None = None  # GIT_SSH_COMMAND for that read
    state_ssh_multiplex: bool = False  # agents reuse one ssh connection per state host
    # AgentConfig keys for every host, checked as AgentConfig checks them (JSON in the environment)
    agent: AgentOverrides = Field(default_factory=AgentOverrides)
    limit: layers.Listed[str] = ()  # host or group names; empty: every host
    check: bool = False
    diff: bool = False
    batch: int = Field(default=0, ge=0)  # 0: every host at once
    tags: layers.Listed[str] = TAGS
    workers: int = Field(default=10, ge=1, le=256)
    handshakes: int = Field(default=8, ge=1, le=64)  # below sshd's MaxStartups (10)
    connect_timeout: float = Field(default=10.0, gt=0)
    verify_timeout: float = Field(default=90.0, gt=0)
    keep_releases: int = Field(default=3, ge=2)
    # runtime: container hosts, through the docker SDK of the local engine (see docs/deploy.md)
    container_root: Path = Path("/")  # where the container host's files are, seen from here
    container_network: str | None = None  # the docker network agent containers join
    container_base: str | None = None  # FROM of the agent image (default: the test-host one)
    # the npm package the pinned Claude Code CLI is packed from (default: the `claude` on PATH's)
    claude_code_package: Path | None = None

    @field_validator("tags")
    @classmethod
    def _known_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(TAGS)
        if unknown:
            raise ValueError(f"unknown tags {sorted(unknown)}: use {TAGS}")
        return value

    @property
    def cache_dir(self) -> Path:
        return self.work_dir / "wheels"

    @property
    def cli_cache_dir(self) -> Path:
        return self.work_dir / "claude-code"

    @property
    def lock_file(self) -> Path:
        return self.work_dir / "deploy.lock"

    def wants(self, tag: str) -> bool:
        return tag in self.tags


PLANE = layers.Plane("deploy", DeploySettings, json_keys=("agent",))


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, path: Path | None = None
) -> DeploySettings:
    """The file (``path``, else ``CLUSTER_DEPLOY_FILE``'s), CLUSTER_DEPLOY_<KEY> variables and
    ``flags`` (None: not given), layered as every plane's settings are."""
    return layers.load(PLANE, flags, environ, path)
