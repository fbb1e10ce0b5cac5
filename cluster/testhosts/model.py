"""The plain records of a test-host set: where its files live and what each host is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NETWORK = "ccc-test"
# Unusual on purpose so it clashes with nothing; used only container to container.
SUBNET = "172.29.231.0/24"
GATEWAY = "172.29.231.1"
DEFAULT_PREFIX = "ccc-host"
LOOPBACK = "127.0.0.1"


def default_state_dir() -> Path:
    """``.cluster/testhosts`` under the project (the working directory of invoke and pytest)."""
    return Path.cwd() / ".cluster" / "testhosts"


@dataclass(frozen=True)
class StatePaths:
    """Files of one test-host set: the client key, known_hosts and the Nornir inventory."""

    root: Path

    @property
    def private_key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.root / "id_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def hosts_file(self) -> Path:
        return self.root / "hosts.yaml"

    @property
    def groups_file(self) -> Path:
        return self.root / "groups.yaml"

    @property
    def defaults_file(self) -> Path:
        return self.root / "defaults.yaml"


@dataclass(frozen=True)
class HostRecord:
    """One running test host as reached from this machine and from its peers."""

    name: str
    port: int
    address: str
    system_state: str = "running"
    failed_units: tuple[str, ...] = ()

    @property
    def known_hosts_name(self) -> str:
        """The name ssh and paramiko look the host key up under."""
        return f"[{LOOPBACK}]:{self.port}"


@dataclass(frozen=True)
class HostSet:
    """What ``up`` started: the hosts, their name prefix and the files that reach them."""

    name_prefix: str
    hosts: tuple[HostRecord, ...]
    paths: StatePaths

    def by_name(self, name: str) -> HostRecord:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)
