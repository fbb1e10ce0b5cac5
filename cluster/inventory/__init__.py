"""The agent-host inventory: a directory Nornir loads through the ClusterInventory plugin."""

from __future__ import annotations

from cluster.inventory.load import load_inventory
from cluster.inventory.model import HostSpec, Inventory, Thresholds

__all__ = ["HostSpec", "Inventory", "Thresholds", "load_inventory"]
