"""``--limit`` as a Nornir filter: the hosts named, and the members of the groups named."""

from __future__ import annotations

from collections.abc import Sequence

from nornir.core import Nornir
from nornir.core.filter import F_BASE, F

from cluster.errors import ConfigError
from cluster.inventory.model import HostSpec, Inventory, specs_of


def limit_filter(inventory: Inventory, limit: Sequence[str]) -> F_BASE:
    """Every host when ``limit`` is empty; a name neither a host nor a group of one is refused.

    A group matches the hosts that list it themselves (Nornir's ``groups__any``).
    """
    if not limit:
        return F()
    hosts = inventory.nornir_inventory.hosts
    known = set(hosts) | {group.name for host in hosts.values() for group in host.groups}
    unknown = sorted(set(limit) - known)
    if unknown:
        raise ConfigError(f"--limit: no host or group named {', '.join(unknown)}")
    return F(name__any=list(limit)) | F(groups__any=list(limit))


def limited(inventory: Inventory, limit: Sequence[str]) -> Nornir:
    """Nornir over the hosts ``limit`` selects (see limit_filter)."""
    return inventory.nornir().filter(limit_filter(inventory, limit))


def select(inventory: Inventory, limit: Sequence[str]) -> list[HostSpec]:
    """The specs of the hosts ``limit`` selects, in inventory order."""
    return list(specs_of(limited(inventory, limit).inventory.hosts.values()))
