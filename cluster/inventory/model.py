"""The validated inventory: each host with every field resolved as Nornir would resolve it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cluster.inventory.schema import Port, Runtime, Specialty, StateRepo, Word


class Thresholds(BaseModel):
    """What preflight asks of a host; an operator may lower them in defaults, groups or hosts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_cpus: int = Field(default=4, ge=0)
    min_memory_gb: float = Field(default=16.0, ge=0)
    min_disk_gb: float = Field(default=20.0, ge=0)
    max_clock_skew_s: float = Field(default=5.0, gt=0)


class HostSpec(BaseModel):
    """One agent host. ``name`` is the Nornir host name and also the agent id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hostname: Word
    port: Port = 22
    username: Word
    groups: tuple[str, ...] = ()
    specialties: tuple[Specialty, ...] = Field(min_length=1)
    max_tasks: int = Field(default=1, ge=1, le=64)
    runtime: Runtime = "systemd"
    state_repo: StateRepo
    thresholds: Thresholds = Field(default_factory=Thresholds)
    metrics_port: Port | None = None
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    container_image: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def address(self) -> str:
        """hostname:port, the key under which two entries would be the same machine."""
        return f"{self.hostname}:{self.port}"


class Inventory(BaseModel):
    """All hosts of one inventory directory, in file order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path
    hosts: tuple[HostSpec, ...]
    known_specialties: frozenset[str]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(host.name for host in self.hosts)

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)
