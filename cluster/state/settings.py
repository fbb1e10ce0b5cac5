"""Repo-wide settings read from ``cluster.yaml`` on main; the defaults suit a small fleet."""

from __future__ import annotations

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError
from cluster.state.schema import DEFAULT_SPECIALTIES

SETTINGS_FILE = "cluster.yaml"


class RepoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specialties: tuple[str, ...] = ()
    lease_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    heartbeat_seconds: float = Field(default=15.0, ge=0.2, le=600.0)
    fold_delay_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    fold_batch: int = Field(default=64, ge=1, le=500)
    retry_backoff_seconds: float = Field(default=10.0, ge=0.0, le=3600.0)
    skew_seconds: float = Field(default=2.0, ge=0.0, le=300.0)

    @property
    def known_specialties(self) -> frozenset[str]:
        return frozenset(DEFAULT_SPECIALTIES) | frozenset(self.specialties)


def parse_settings(data: bytes | None) -> RepoSettings:
    if not data:
        return RepoSettings()
    try:
        body = yaml.safe_load(data.decode("utf-8")) or {}
        return RepoSettings.model_validate(body)
    except (UnicodeDecodeError, yaml.YAMLError, PydanticError) as exc:
        raise ValidationError(SETTINGS_FILE, [str(exc).splitlines()[0]]) from exc
