"""Nornir over a validated inventory: SimpleInventory on the same files, a threaded runner."""

from __future__ import annotations

from nornir import InitNornir
from nornir.core import Nornir

from cluster.errors import ConfigError
from cluster.inventory.load import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE
from cluster.inventory.model import Inventory

DEFAULT_WORKERS = 10


def init_nornir(inventory: Inventory, num_workers: int = DEFAULT_WORKERS) -> Nornir:
    """A Nornir object for the hosts of ``inventory`` (only a validated one is accepted).

    Each worker thread serves one host at a time, so a task that opens one connection per host
    never shares it across threads and never opens two handshakes to the same target.
    """
    root = inventory.root
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": num_workers}},
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(root / HOSTS_FILE),
                "group_file": str(root / GROUPS_FILE),
                "defaults_file": str(root / DEFAULTS_FILE),
            },
        },
        logging={"enabled": False},
    )
    if sorted(nr.inventory.hosts) != sorted(inventory.names):
        raise ConfigError(f"{root}: the inventory changed after it was validated; load it again")
    return nr
