"""restart: restart the agent on the selected hosts in parallel and verify each came back."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.verify import verify_systemd
from cluster.errors import ClusterError
from cluster.health.connect import HandshakeLimiter
from cluster.inventory import HostSpec
from cluster.ops.hosts import host_ops, service


def restart_hosts(
    hosts: Sequence[HostSpec],
    reader: HeartbeatReader | None,
    timeout: float = 90.0,
) -> dict[str, str]:
    """Host name -> "" when restarted and verified (unit active, heartbeat from its new pid),
    else the reason it was not."""
    limiter = HandshakeLimiter()

    def one(spec: HostSpec) -> tuple[str, str]:
        try:
            with host_ops(spec, limiter) as ops:
                service(ops, spec.runtime, "restart")
                if spec.runtime == "systemd":
                    verify_systemd(ops, spec.name, "", reader, timeout)
        except ClusterError as exc:
            return spec.name, str(exc).removeprefix(f"{spec.name}: ")
        return spec.name, ""

    with ThreadPoolExecutor(max_workers=max(1, min(len(hosts), 16))) as pool:
        return dict(pool.map(one, hosts))
