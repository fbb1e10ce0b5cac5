"""The shapes of hosts.yaml, groups.yaml and defaults.yaml entries, before inheritance."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cluster.state.ids import ID_RULE, is_safe_id

Port = Annotated[int, Field(ge=1, le=65535)]
Runtime = Literal["systemd", "container"]
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
_URL_SCHEMES = ("ssh", "https", "http", "git", "file")


def _specialty_name(value: str) -> str:
    if not is_safe_id(value):
        raise ValueError(f"bad specialty name {value!r}: expected {ID_RULE}")
    return value


def _state_repo(value: str) -> str:
    """A git URL (ssh://, https://, file://...) or scp-like user@host:path, with no password."""
    if _SCP_LIKE.match(value):
        return value
    parts = urlsplit(value)
    if parts.scheme not in _URL_SCHEMES or not (parts.netloc or parts.scheme == "file"):
        raise ValueError(
            f"not a git URL: {value!r} (expected {', '.join(s + '://' for s in _URL_SCHEMES)} "
            "or user@host:path)"
        )
    if parts.password is not None:
        raise ValueError("the URL carries a password: secrets never live in the inventory")
    return value


def _plain_text(value: str) -> str:
    if not value.strip() or any(ch.isspace() for ch in value):
        raise ValueError(f"expected a non-empty value without spaces, got {value!r}")
    return value


Specialty = Annotated[str, AfterValidator(_specialty_name)]
StateRepo = Annotated[str, AfterValidator(_state_repo)]
Word = Annotated[str, AfterValidator(_plain_text)]


class HostData(BaseModel):
    """``data:`` keys a host or group may set; None means "inherit" (host > groups > defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specialties: list[Specialty] | None = Field(default=None, min_length=1)
    max_tasks: int | None = Field(default=None, ge=1, le=64)
    runtime: Runtime | None = None
    state_repo: StateRepo | None = None
    min_cpus: int | None = Field(default=None, ge=0)
    min_memory_gb: float | None = Field(default=None, ge=0)
    min_disk_gb: float | None = Field(default=None, ge=0)
    max_clock_skew_s: float | None = Field(default=None, gt=0)
    metrics_port: Port | None = None
    ssh_key_file: Word | None = None
    known_hosts_file: Word | None = None
    container_image: Word | None = None
    labels: dict[str, str] | None = None


class DefaultsData(HostData):
    """Defaults may also name specialties beyond the built-in ones."""

    extra_specialties: list[Specialty] = Field(default_factory=list)


class Entry(BaseModel):
    """One host or group entry: Nornir's connection fields, its groups and its data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: Word | None = None
    port: Port | None = None
    username: Word | None = None
    groups: list[Word] = Field(default_factory=list)
    data: HostData = Field(default_factory=HostData)


class Defaults(BaseModel):
    """defaults.yaml: the last place Nornir looks for a field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: Word | None = None
    port: Port | None = None
    username: Word | None = None
    data: DefaultsData = Field(default_factory=DefaultsData)


# Matched against every key, at any depth, lower-cased.
SECRET_WORDS = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "credential",
    "private_key",
)
# Well-known token prefixes (Anthropic, GitHub): a value like this is a pasted secret.
SECRET_PREFIXES = ("sk-ant-", "ghp_", "gho_", "ghs_", "ghu_", "github_pat_")


def secret_paths(doc: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys that look like secrets, or whose value looks like a token."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}{key}"
            if any(word in str(key).lower() for word in SECRET_WORDS):
                found.append(path)
            else:
                found.extend(secret_paths(value, path + "."))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found.extend(secret_paths(value, f"{prefix}{index}."))
    elif isinstance(doc, str) and doc.startswith(SECRET_PREFIXES):
        found.append(prefix.rstrip("."))
    return found
