"""The agent containers' command under Compose: the replica's id from DNS, then the agent.

``python -m cluster.compose.entry [agent run flags]``: with ``CLUSTER_COMPOSE_SERVICE`` naming
the service, sets ``CLUSTER_AGENT_ID`` to ``<service>-<n>`` (cluster.compose.identity) unless
it is set already, then runs ``claude-cluster agent run`` in this process (signals reach it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from cluster.compose.identity import agent_id, own_address, reverse_lookup
from cluster.errors import ConfigError

SERVICE_VARIABLE = "CLUSTER_COMPOSE_SERVICE"
ID_VARIABLE = "CLUSTER_AGENT_ID"


def replica_id(service: str) -> str:
    """This container's agent id, asked of Docker's DNS; ConfigError when it has no name."""
    address = own_address()
    name = reverse_lookup(address)
    if name is None:
        raise ConfigError(f"Docker's DNS has no name for {address}: not on a Compose network? "
                          f"set {ID_VARIABLE} instead")  # fmt: skip
    return agent_id(name, service)


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli import main as cli

    if not os.environ.get(ID_VARIABLE):
        service = os.environ.get(SERVICE_VARIABLE, "")
        try:
            if not service:
                raise ConfigError(f"{SERVICE_VARIABLE} is not set: which service is this?")
            os.environ[ID_VARIABLE] = replica_id(service)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    return cli(["agent", "run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
