"""The agent-host inventory: a validated Nornir SimpleInventory directory."""

from __future__ import annotations

from cluster.inventory.load import load_inventory
from cluster.inventory.model import HostSpec, Inventory, Thresholds

__all__ = ["HostSpec", "Inventory", "Thresholds", "load_inventory"]
