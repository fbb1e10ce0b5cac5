"""remove-agent: stop the agent by SIGTERM (it releases its claims), drop it from hosts.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ClusterError
from cluster.inventory import load_inventory
from cluster.inventory.edit import remove_host
from cluster.ops.hosts import host_ops, service


@dataclass(frozen=True)
class Removal:
    name: str
    stopped: bool
    note: str


def remove_agent(inventory_dir: Path, name: str, force: bool = False) -> Removal:
    """Stop and disable the agent, then remove its entry (comments of the others kept).

    A host that cannot be reached is removed only with ``force``: its agent may still run,
    and its claims become takeable when their leases expire (nothing is lost, work resumes
    on another agent as attempt + 1).
    """
    inventory = load_inventory(inventory_dir)
    if name not in inventory.names:
        raise ClusterError(f"remove-agent: no host named {name!r} in {inventory_dir}/hosts.yaml")
    spec = inventory.host(name)
    try:
        with host_ops(spec) as ops:
            service(ops, spec.runtime, "remove")
    except ClusterError as exc:
        if not force:
            raise ClusterError(f"remove-agent {name}: {exc}; nothing removed (--force removes "
                               "it anyway: its claims are taken over once their leases "
                               "expire)") from exc  # fmt: skip
        remove_host(inventory_dir, name)
        return Removal(name, False, f"not stopped ({exc}); its leases expire and other agents "
                                    "take its tasks over")  # fmt: skip
    remove_host(inventory_dir, name)
    note = ("stopped with SIGTERM: held tasks were released (not counted as attempts), "
            "the unit is disabled")  # fmt: skip
    return Removal(name, True, note)
