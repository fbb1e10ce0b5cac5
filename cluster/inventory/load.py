"""load_inventory: the inventory directory loaded once, by Nornir, through ClusterInventory."""

from __future__ import annotations

from pathlib import Path

from nornir import InitNornir

from cluster.inventory.model import DEFAULT_WORKERS, Inventory
from cluster.inventory.plugin import PLUGIN_NAME
from cluster.inventory.yamlfile import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE

__all__ = ["DEFAULTS_FILE", "GROUPS_FILE", "HOSTS_FILE", "load_inventory"]


def load_inventory(path: Path | str) -> Inventory:
    """Read hosts.yaml (required), groups.yaml and defaults.yaml (optional) under ``path``.

    Raises ValidationError whose problems each name the file, the host or group and the field.
    """
    root = Path(path)
    nornir = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": DEFAULT_WORKERS}},
        inventory={"plugin": PLUGIN_NAME, "options": {"path": str(root)}},
        logging={"enabled": False},
    )
    return Inventory(root=root, nornir_inventory=nornir.inventory)
