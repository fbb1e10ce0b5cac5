"""The agent's typed settings: defaults < agent.yaml < CLUSTER_* environment < flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cluster import layers
from cluster.errors import ConfigError
from cluster.state import yamlio
from cluster.state.ids import ID_RULE, is_safe_id


class SandboxConfig(BaseModel):
    """How an attempt's processes are sealed (see docs/security.md); ``sandbox: off`` in a
    file or ``CLUSTER_AGENT_SANDBOX=off`` is the one way to run task code unsealed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["bwrap", "off"] = "bwrap"
    memory_mb: int = Field(default=4096, ge=64)  # RLIMIT_DATA: heap and anonymous mappings
    processes: int = Field(default=512, ge=8)  # RLIMIT_NPROC inside the sandbox's user ns
    file_size_mb: int = Field(default=4096, ge=1)  # RLIMIT_FSIZE: the largest file written
    open_files: int = Field(default=1024, ge=16)  # RLIMIT_NOFILE
    allow_hosts: tuple[str, ...] = ()  # host:port reached through the broker's proxy
    read_only_paths: tuple[Path, ...] = ()  # host paths visible read-only, beyond the system

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allow_hosts")
    @classmethod
    def _host_port(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"allow_hosts entry {entry!r}: expected host:port")
        return value


    @classmethod
    def of(cls, value: Any) -> SandboxConfig:
        """The settings from what a file, a flag or the environment says: a mapping, or a
        mode alone (``off``/``bwrap``); None is the defaults."""
        return cls.model_validate(_sandbox(value) if value is not None else {})


def _sandbox(value: Any) -> Any:
    """``off``/``bwrap`` (a flag, an environment variable, a file's scalar) is the mode."""
    if isinstance(value, str):
        return {"mode": value.strip()}
    if value is False:
        return {"mode": "off"}
    return value


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str
    id: str
    specialties: tuple[str, ...] = Field(min_length=1)
    max_tasks: int = Field(default=1, ge=1, le=64)
    workdir: Path = Path("~/.cache/claude-cluster").expanduser()
    exit_when_idle: bool = False
    lease_seconds: float | None = Field(default=None, ge=0.5, le=3600)
    heartbeat_seconds: float | None = Field(default=None, ge=0.1, le=600)
    poll_seconds: float = Field(default=5.0, ge=0.05, le=600)
    events_path: Path | None = None
    stop_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    runner: Literal["repo", "scratch"] = "repo"
    executors: tuple[Literal["claude", "claude-code", "command"], ...] = ("command",)
    model: str | None = None
    claude_code_task_args: tuple[str, ...] = ()  # CLI flags a task's executor.args may use
    # What the claude-code executor's broker holds: ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN
    # (a subscription's `claude setup-token`), or auto: the API key when set, else the token.
    claude_code_credential: Literal["auto", "api_key", "oauth"] = "auto"
    anthropic_base_url: str | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    forge: Literal["local", "github"] = "local"
    github_base_url: str = "https://api.github.com"
    pull_request_dir: Path | None = None
    repos_root: Path | None = None
    secrets_file: Path | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    keep_failed_workspaces_hours: float = Field(default=24.0, ge=0)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    allow_local_repos: bool = False  # task repos given as a local path or file:// URL
    allowed_repo_prefixes: tuple[str, ...] = ()  # other repo URLs a task may name
    push_ignore: tuple[str, ...] = ()  # more never-pushed patterns (gitignore syntax)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not is_safe_id(value):
            raise ValueError(f"unsafe agent id {value!r}: expected {ID_RULE}")
        return value

    @field_validator("specialties", "executors", "claude_code_task_args",
                     "allowed_repo_prefixes", "push_ignore", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_mode(cls, value: Any) -> Any:
        return _sandbox(value)


ENV_PREFIX = "CLUSTER_AGENT_"


def read_config_file(path: Path) -> dict[str, Any]:
    """An agent.yaml as a mapping, read strictly (repeated keys refused, unbuildable scalars
    such as a 5,000-digit integer a YAML error with its line); ConfigError otherwise."""
    try:
        body = yamlio.load_strict(path.read_text(encoding="utf-8"))[0] or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read agent config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yamlio.describe(exc)}") from exc
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return body


def load_agent_config(
    path: Path | None, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """Layer the file, the environment and the flags (None means 'not given')."""
    layered: dict[str, Any] = {}
    if path is not None:
        layered.update(read_config_file(path))
    layered.update(layers.environment(AgentConfig, ENV_PREFIX, environ))
    layered.update(layers.given(flags))
    return layers.validate(AgentConfig, layered, str(path) if path else "agent settings")
