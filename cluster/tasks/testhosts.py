"""Invoke tasks for the docker test hosts: ``testhosts.up`` and ``testhosts.down``."""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from cluster.errors import ClusterError
from cluster.testhosts import hosts
from cluster.testhosts.model import DEFAULT_PREFIX, default_state_dir


@task(help={"count": "how many hosts to start (default 3)", "prefix": "container name prefix"})
def up(c: Context, count: int = 3, prefix: str = DEFAULT_PREFIX) -> None:
    """Start COUNT fresh systemd+sshd test hosts in docker, reachable on 127.0.0.1 ports.

    Builds the image on first use (debootstrap, about a minute), then writes the client key,
    known_hosts and a Nornir inventory (hosts/groups/defaults.yaml) to .cluster/testhosts/.
    """
    state_dir = default_state_dir()
    try:
        started = hosts.up(count, prefix, state_dir)
    except ClusterError as exc:
        raise Exit(f"testhosts up failed: {exc}", exc.exit_code) from exc
    for host in started.hosts:
        note = f" (failed units: {', '.join(host.failed_units)})" if host.failed_units else ""
        print(
            f"{host.name}: 127.0.0.1:{host.port}, network {host.address}, "
            f"systemd {host.system_state}{note}"
        )
    paths = started.paths
    print(f"inventory, key and known_hosts in {state_dir}; for example:")
    print(
        f"  ssh -i {paths.private_key} -o UserKnownHostsFile={paths.known_hosts} "
        f"-p {started.hosts[0].port} root@127.0.0.1"
    )


@task(help={"prefix": "remove only this set (default: every test host)"})
def down(c: Context, prefix: str = "") -> None:
    """Remove the test-host containers and their docker network; does nothing if none run."""
    try:
        removed = hosts.down(prefix or None)
    except ClusterError as exc:
        raise Exit(f"testhosts down failed: {exc}", exc.exit_code) from exc
    print(f"removed {len(removed)} test host(s){': ' + ', '.join(removed) if removed else ''}")


ns = Collection("testhosts", up, down)
