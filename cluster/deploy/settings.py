"""Deploy settings, one typed object: defaults < CLUSTER_DEPLOY_* environment < flags."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cluster import layers
from cluster.errors import ValidationError

ENV_PREFIX = "CLUSTER_DEPLOY_"
TAGS = ("preflight", "code", "config", "service")


class DeploySettings(BaseModel):
    """Everything a deploy run needs besides the inventory's hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(default_factory=Path.cwd)  # the project: wheels are built from it
    inventory: Path = Path("inventory")
    work_dir: Path = Path(".cluster")  # wheel cache, deploy lock, state-repo mirror
    secrets_file: Path | None = None  # KEY=VALUE, mode 0600; the environment wins over it
    state_ssh_key: Path | None = None  # deploy key the agents reach an ssh:// state repo with
    state_known_hosts: Path | None = None  # the state host's key, as the agents see it
    state_url: str | None = None  # how the control host reads heartbeats (default: each host's)
    state_ssh_command: str | None = None  # GIT_SSH_COMMAND for that read
    state_ssh_multiplex: bool = False  # agents reuse one ssh connection per state host
    agent: dict[str, Any] = Field(default_factory=dict)  # extra AgentConfig keys for every host
    limit: tuple[str, ...] = ()  # host or group names; empty: every host
    check: bool = False
    diff: bool = False
    batch: int = Field(default=0, ge=0)  # 0: every host at once
    tags: tuple[str, ...] = TAGS
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


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> DeploySettings:
    """Layer CLUSTER_DEPLOY_<FIELD> variables and then ``flags`` (None: not given)."""
    layered: dict[str, Any] = layers.environment(DeploySettings, ENV_PREFIX, environ)
    layered.update(layers.given(flags))
    if isinstance(layered.get("agent"), str):  # from the environment: a JSON object
        try:
            layered["agent"] = json.loads(layered["agent"])
        except ValueError as exc:
            raise ValidationError("deploy settings", [f"agent: not JSON: {exc}"]) from exc
    for key in ("limit", "tags"):
        if isinstance(layered.get(key), str):
            layered[key] = tuple(p.strip() for p in layered[key].split(",") if p.strip())
    unknown = set(layered.get("tags", ())) - set(TAGS)
    if unknown:
        raise ValidationError("deploy --tags", [f"unknown tags {sorted(unknown)}: use {TAGS}"])
    return layers.validate(DeploySettings, layered, "deploy settings")
