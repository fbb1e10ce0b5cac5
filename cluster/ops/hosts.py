"""One connection to one inventory host for an operation, its unit or container driven."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cluster.deploy.remote import HostOps
from cluster.errors import HostError
from cluster.health.connect import HandshakeLimiter, open_connection
from cluster.inventory import HostSpec
from cluster.transport import run
from cluster.units import layout

STOP_TIMEOUT = 120.0  # the unit's TimeoutStopSec covers the agent's stop grace
# docker's SIGTERM-to-SIGKILL wait (its default is 10 s): longer than any agent's stop grace.
CONTAINER_STOP_SECONDS = 90


@contextmanager
def host_ops(spec: HostSpec, limiter: HandshakeLimiter | None = None) -> Iterator[HostOps]:
    conn = open_connection(spec, limiter or HandshakeLimiter())
    try:
        yield HostOps(spec.name, conn)
    finally:
        conn.close()


def service(ops: HostOps, runtime: str, verb: str) -> None:
    """``stop``, ``start``, ``restart`` or ``remove`` the agent under its runtime.

    ``stop`` and ``remove`` send SIGTERM and wait: the agent stops claiming and releases what
    it holds (not counted as an attempt) within its stop grace.
    """
    argv = service_argv(runtime, verb, ops.name)
    code, _, err = run(ops.conn, argv, check=False, timeout=STOP_TIMEOUT)
    if code != 0:
        tail = " | ".join(err.strip().splitlines()[-3:]) or "(no stderr)"
        raise HostError(ops.name, f"{verb} of the agent failed: {argv[0]} exited {code}: {tail}")


def service_argv(runtime: str, verb: str, agent: str) -> list[str]:
    if runtime == "container":
        name, wait = layout.container_name(agent), str(CONTAINER_STOP_SECONDS)
        if verb == "remove":
            script = 'docker stop --time "$1" "$2" && docker rm "$2"'
            return ["sh", "-c", script, "remove", wait, name]
        if verb in ("stop", "restart"):
            return ["docker", verb, "--time", wait, name]
        return ["docker", verb, name]
    if verb == "remove":
        return ["systemctl", "disable", "--now", "--quiet", layout.UNIT_NAME]
    return ["systemctl", verb, layout.UNIT_NAME]
