"""The agent's settings as plain typed data: what the agent runs with, what units render from and
what deploy sets on every host (``AgentOverrides``); it imports nothing of the agent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, field_validator
from pydantic_core import core_schema

from cluster.layers import USER_WORK_DIR, Listed
from cluster.state.ids import ID_RULE, is_safe_id
from cluster.state.remotewatch import DEFAULT_COMMAND
from cluster.state.session import DEFAULT_COMMAND as SESSION_COMMAND


class SandboxConfig(BaseModel):
    """How an attempt's processes are sealed (see docs/security.md); ``sandbox: off`` in a
    file or ``CLUSTER_AGENT_SANDBOX=off`` is the one way to run task code unsealed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["bwrap", "off"] = "bwrap"
    memory_mb: int = Field(default=4096, ge=64)  # RLIMIT_DATA: heap and anonymous mappings
    processes: int = Field(default=512, ge=8)  # RLIMIT_NPROC inside the sandbox's user ns
    file_size_mb: int = Field(default=4096, ge=1)  # RLIMIT_FSIZE: the largest file written
    open_files: int = Field(default=1024, ge=16)  # RLIMIT_NOFILE
    allow_hosts: Listed[str] = ()  # host:port reached through the broker's proxy
    read_only_paths: tuple[Path, ...] = ()  # host paths visible read-only, beyond the system

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
    specialties: Listed[str] = Field(min_length=1)
    max_tasks: int = Field(default=1, ge=1, le=64)
    workdir: Path = USER_WORK_DIR.expanduser()
    exit_when_idle: bool = False
    lease_seconds: float | None = Field(default=None, ge=0.5, le=3600)
    heartbeat_seconds: float | None = Field(default=None, ge=0.1, le=600)
    poll_seconds: float = Field(default=5.0, ge=0.05, le=600)
    # Run on an ssh state host to hear of main's moves at once (cluster.state.refwatch); ""
    # polls only.
    state_watch_command: str = Field(default=DEFAULT_COMMAND, pattern=r"^[A-Za-z0-9_./-]*$")
    # Run on an ssh state host to read and write over one session (cluster.state.sessiond)
    # instead of a fetch per read and a push per write; "" uses git's transport only.
    state_session_command: str = Field(default=SESSION_COMMAND, pattern=r"^[A-Za-z0-9_./-]*$")
    events_path: Path | None = None
    stop_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    runner: Literal["repo", "scratch"] = "repo"
    executors: Listed[Literal["claude", "claude-code", "command"]] = ("command",)
    model: str | None = None
    claude_code_task_args: Listed[str] = ()  # CLI flags a task's executor.args may use
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
    allowed_repo_prefixes: Listed[str] = ()  # other repo URLs a task may name
    push_ignore: Listed[str] = ()  # more never-pushed patterns (gitignore syntax)
    # Follow-up rounds a pull request gets when its task does not say (tasks' max_rounds).
    follow_up_max_rounds: int = Field(default=3, ge=1, le=20)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not is_safe_id(value):
            raise ValueError(f"unsafe agent id {value!r}: expected {ID_RULE}")
        return value

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_mode(cls, value: Any) -> Any:
        return _sandbox(value)


# What an AgentOverrides is checked with when it does not say them: each host's own.
_HOST_KEYS = {"state": "-", "id": "host", "specialties": ("-",)}


class AgentOverrides(Mapping[str, Any]):
    """AgentConfig keys set for every host of a deploy (deploy settings' ``agent``).

    Each key and value is checked by AgentConfig itself, when the settings are read, so an
    unknown key or a bad value is an error naming ``agent.<key>`` before any host is touched;
    the values are AgentConfig's types. It reads as the mapping of the keys given, as
    ``agent_config(host, **overrides)`` takes them.
    """

    def __init__(self, given: Mapping[str, Any] | None = None) -> None:
        """``given`` checked; a pydantic ValidationError names each bad key."""
        self._keys = self._typed(AgentConfig.model_validate, given or {})

    def __getitem__(self, key: str) -> Any:
        return self._keys[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"AgentOverrides({self._keys!r})"

    @staticmethod
    def _typed(check: Callable[[Any], Any], given: Mapping[str, Any]) -> dict[str, Any]:
        config = check({**_HOST_KEYS, **given})
        return {key: getattr(config, key) for key in given}

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(
            cls._validate, handler.generate_schema(AgentConfig),
            serialization=core_schema.plain_serializer_function_ser_schema(dict),
        )

    @classmethod
    def _validate(cls, value: Any, check: core_schema.ValidatorFunctionWrapHandler) -> Any:
        """As a model's field: checked by the field's own validator, so errors are located
        at ``<field>.<key>``."""
        if isinstance(value, AgentOverrides):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("expected a mapping of agent settings")
        made = cls.__new__(cls)
        made._keys = cls._typed(check, value)
        return made
