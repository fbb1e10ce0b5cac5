"""Repo-wide settings read from ``cluster.yaml`` on main; the defaults suit a small fleet."""

from __future__ import annotations

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError
from cluster.state import yamlio
from cluster.state.schema import DEFAULT_SPECIALTIES

SETTINGS_FILE = "cluster.yaml"


class RepoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specialties: tuple[str, ...] = ()
    lease_seconds: float = Field(default=60.0, strict=True, ge=1.0, le=3600.0)
    heartbeat_seconds: float = Field(default=15.0, strict=True, ge=0.2, le=600.0)
    fold_delay_seconds: float = Field(default=5.0, strict=True, ge=0.0, le=3600.0)
    fold_batch: int = Field(default=64, strict=True, ge=1, le=500)
    retry_backoff_seconds: float = Field(default=10.0, strict=True, ge=0.0, le=3600.0)
    skew_seconds: float = Field(default=2.0, strict=True, ge=0.0, le=300.0)

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
