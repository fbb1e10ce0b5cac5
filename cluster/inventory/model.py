"""The validated inventory: Nornir's inventory, each host carrying the HostSpec Nornir resolved."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nornir.core import Nornir
from nornir.core.inventory import Defaults as NornirDefaults
from nornir.core.inventory import Host
from nornir.core.inventory import Inventory as NornirInventory
from nornir.core.state import GlobalState
from nornir.plugins.runners import ThreadedRunner
from pydantic import BaseModel, ConfigDict, Field

from cluster.inventory.schema import Port, Runtime, Specialty, StateRepo, Word
from cluster.state.schema import DEFAULT_SPECIALTIES

DEFAULT_WORKERS = 10


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


class AgentHost(Host):
    """A Nornir host of the project's inventory plugin: ``spec`` is its validated HostSpec."""

    __slots__ = ("spec",)
    spec: HostSpec


def spec_of(host: Host) -> HostSpec:
    """The HostSpec of a host loaded by the project's inventory plugin."""
    if not isinstance(host, AgentHost):
        raise TypeError(f"{host.name}: not a host of the ClusterInventory plugin")
    return host.spec


def specs_of(hosts: Iterable[Host]) -> tuple[HostSpec, ...]:
    return tuple(spec_of(host) for host in hosts)


def known_specialties(defaults: NornirDefaults) -> frozenset[str]:
    """The built-in specialties and the ``extra_specialties`` of defaults.yaml's data."""
    return frozenset(DEFAULT_SPECIALTIES) | frozenset(defaults.data.get("extra_specialties", ()))


class Inventory(BaseModel):
    """All hosts of one inventory directory, in file order, as Nornir loaded them."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    root: Path
    nornir_inventory: NornirInventory = Field(repr=False)

    @property
    def hosts(self) -> tuple[HostSpec, ...]:
        return specs_of(self.nornir_inventory.hosts.values())

    @property
    def known_specialties(self) -> frozenset[str]:
        return known_specialties(self.nornir_inventory.defaults)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.nornir_inventory.hosts)

    def host(self, name: str) -> HostSpec:
        return spec_of(self.nornir_inventory.hosts[name])  # KeyError for an unknown name

    def nornir(self, num_workers: int = DEFAULT_WORKERS) -> Nornir:
        """A Nornir object over these hosts with ``num_workers`` threads and a fresh state.

        Each worker thread serves one host at a time, so a task that opens one connection per
        host never shares it across threads and never opens two handshakes to the same target.
        """
        return Nornir(inventory=self.nornir_inventory, runner=ThreadedRunner(num_workers),
                      data=GlobalState())  # fmt: skip
