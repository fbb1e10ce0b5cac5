"""Repo-wide settings read from ``cluster.yaml`` on main; the defaults suit a small fleet."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError
from cluster.state import yamlio
from cluster.state.schema import DEFAULT_SPECIALTIES

SETTINGS_FILE = "cluster.yaml"

# What `profile: hosted` means for the keys cluster.yaml does not set (docs/capacity.md): a
# state repo on a forge that limits pushes (GitHub: about 6 a minute). Idle agents beat every
# 10 minutes, a claim's lease covers its task's timeout, heartbeats ride on the claims' and
# results' own pushes, and folds batch five minutes of results.
HOSTED_DEFAULTS: dict[str, float] = {
    "lease_seconds": 180.0,  # added to the task's timeout: the lease of one claim
    "idle_heartbeat_seconds": 600.0,
    "renew_fraction": 0.8,
    "fold_delay_seconds": 300.0,
}


class RepoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specialties: tuple[str, ...] = ()
    # default: a self-hosted state repo; hosted: a forge's (HOSTED_DEFAULTS, push budget).
    profile: Literal["default", "hosted"] = "default"
    lease_seconds: float = Field(default=60.0, strict=True, ge=1.0, le=3600.0)
    heartbeat_seconds: float = Field(default=15.0, strict=True, ge=0.2, le=600.0)
    fold_delay_seconds: float = Field(default=5.0, strict=True, ge=0.0, le=3600.0)
    fold_batch: int = Field(default=64, strict=True, ge=1, le=500)
    retry_backoff_seconds: float = Field(default=10.0, strict=True, ge=0.0, le=3600.0)
    skew_seconds: float = Field(default=2.0, strict=True, ge=0.0, le=300.0)
    # Hosted profile only: an agent holding nothing beats this often (none: heartbeat_seconds),
    # a claim is renewed once this fraction of its lease has passed, and health warns when the
    # state repo's pushes in the last hour pass this many a minute.
    idle_heartbeat_seconds: float | None = Field(default=None, strict=True, ge=0.2, le=3600.0)
    renew_fraction: float = Field(default=0.34, strict=True, gt=0.0, lt=1.0)
    push_budget_per_minute: float = Field(default=6.0, strict=True, gt=0.0, le=10000.0)

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        """The hosted profile's values for the keys the file leaves out."""
        if isinstance(data, dict) and data.get("profile") == "hosted":
            return {**HOSTED_DEFAULTS, **data}
        return data

    @property
    def hosted(self) -> bool:
        return self.profile == "hosted"

    @property
    def idle_heartbeat(self) -> float:
        return self.idle_heartbeat_seconds or self.heartbeat_seconds

    @property
    def known_specialties(self) -> frozenset[str]:
        return frozenset(DEFAULT_SPECIALTIES) | frozenset(self.specialties)


def parse_settings(data: bytes | None) -> RepoSettings:
    """The settings in ``data`` (none: the defaults); whatever it holds, a ValidationError with
    one line if bad (repeated keys, unbuildable scalars and deep nesting included: the task
    files' loader). One file on main, not layered: see docs/configuration.md."""
    if not data:
        return RepoSettings()
    try:
        body = yamlio.load_strict(data.decode("utf-8"))[0] or {}
    except UnicodeDecodeError as exc:
        raise ValidationError(SETTINGS_FILE, [f"not UTF-8: {exc}"]) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        problem = yamlio.describe(exc) if isinstance(exc, yaml.YAMLError) else "nested too deep"
        raise ValidationError(SETTINGS_FILE, [problem]) from exc
    if not isinstance(body, dict):
        raise ValidationError(SETTINGS_FILE, [
            f"expected a mapping of settings, found {type(body).__name__}"])
    try:
        return RepoSettings.model_validate(body)
    except PydanticError as exc:
        raise ValidationError(SETTINGS_FILE, [
            f"field {'.'.join(map(str, e['loc']))!r}: {e['msg']}"
            for e in exc.errors()]) from exc
