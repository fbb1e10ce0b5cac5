"""Brings a set of test hosts up (fresh client key, verified host keys, inventory) and down."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from filelock import FileLock

from cluster.atomicfile import write_atomic
from cluster.errors import HostError
from cluster.testhosts.image import Say, ensure_image
from cluster.testhosts.inventory import write_inventory
from cluster.testhosts.limits import ensure_inotify
from cluster.testhosts.model import (
    DEFAULT_PREFIX,
    GATEWAY,
    NETWORK,
    SUBNET,
    HostRecord,
    HostSet,
    StatePaths,
    default_state_dir,
)
from cluster.testhosts.readiness import NotReady, poll, ssh_banner
from cluster.testhosts.recipe import Recipe
from cluster.transport import docker
from cluster.transport.sshkeys import (
    HOST_KEY_FILES,
    generate_keypair,
    known_hosts_lines,
    parse_public_keys,
)

BOOT_TIMEOUT = 180.0
SSHD_TIMEOUT = 60.0
PORT_ATTEMPTS = 5
_UP = ("running", "degraded")
_BROKEN = ("maintenance", "stopping")


def up(
    count: int,
    name_prefix: str = DEFAULT_PREFIX,
    state_dir: Path | None = None,
    *,
    recipe: Recipe | None = None,
    say: Say = print,
) -> HostSet:
    """Start ``count`` fresh hosts named PREFIX-1..N, replacing any earlier set of that prefix.

    On return each host's systemd is up, its sshd answers on 127.0.0.1, and the state dir
    holds the client key, a known_hosts with each host's key (read over docker exec, a trusted
    channel) and a Nornir SimpleInventory.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    paths = StatePaths(state_dir or default_state_dir())
    ensure_inotify(count)  # before any host starts: a host that cannot boot hangs for minutes
    handle = docker.client()
    image = ensure_image(handle, recipe, say=say)
    _remove_set(handle, name_prefix)
    generate_keypair(paths.private_key, comment=f"ccc-testhosts-{name_prefix}")
    public_key = paths.public_key.read_bytes()
    containers = []
    with network_lock():  # another set's `down` must not remove the network under these
        docker.ensure_network(handle, NETWORK, SUBNET, GATEWAY)
        for index in range(1, count + 1):
            container = _start(handle, image, f"{name_prefix}-{index}", name_prefix)
            docker.put_file(container, "/root/.ssh", "authorized_keys", public_key, 0o600)
            containers.append(container)
    say(f"started {count} container(s) from {image}; waiting for systemd and sshd")
    hosts = [wait_ready(container) for container in containers]
    pairs = zip(containers, hosts, strict=True)
    write_atomic(paths.known_hosts, "".join(_known_hosts_text(c, h) for c, h in pairs))
    write_inventory(hosts, paths)
    return HostSet(name_prefix, tuple(hosts), paths)


def down(name_prefix: str | None = None) -> list[str]:
    """Remove the labelled test-host containers (one set, or all), then the network if unused.

    Idempotent: with nothing to remove it removes nothing and succeeds.
    """
    handle = docker.client()
    removed = _remove_set(handle, name_prefix)
    with network_lock():
        docker.remove_network(handle, NETWORK)
    return removed


def network_lock() -> FileLock:
    """One machine-wide lock on the shared network's life: sets brought up and down at once
    (two test suites, two terminals) neither create it twice nor remove it under each other."""
    return FileLock(str(Path(tempfile.gettempdir()) / f"{NETWORK}.network.lock"))


def wait_ready(container: docker.Container) -> HostRecord:
    """Poll until systemd has booted (running or degraded) and sshd greets; loud on timeout."""
    name = container.name
    try:
        state = poll(lambda: _system_state(container), what=f"{name} systemd", timeout=BOOT_TIMEOUT)
    except NotReady as exc:
        raise NotReady(f"{exc}\nconsole of {name}:\n{docker.logs_tail(container)}") from exc
    failed: tuple[str, ...] = ()
    if state == "degraded":
        _, out, _ = docker.exec_argv(container, ["systemctl", "--failed", "--no-legend", "--plain"])
        failed = tuple(line.split()[0] for line in out.splitlines() if line.strip())
    port = docker.published_port(container)
    poll(lambda: ssh_banner(port), what=f"{name} sshd on 127.0.0.1:{port}", timeout=SSHD_TIMEOUT)
    address = docker.network_ip(container, NETWORK)
    return HostRecord(name, port, address, state, failed)


def host_keys(container: docker.Container) -> list[tuple[str, str]]:
    """The host's public host keys, read inside the container (no network, nothing to spoof)."""
    _, out, _ = docker.exec_argv(container, ["cat", *HOST_KEY_FILES])
    keys = parse_public_keys(out)
    if not keys:
        raise HostError(container.name, "has no SSH host keys in /etc/ssh")
    return keys


def _known_hosts_text(container: docker.Container, host: HostRecord) -> str:
    lines = known_hosts_lines(host.known_hosts_name, host_keys(container))
    return "".join(f"{line}\n" for line in lines)


def _system_state(container: docker.Container) -> tuple[bool, str]:
    code, out, err = docker.exec_argv(container, ["systemctl", "is-system-running"])
    state = out.strip() or err.strip() or f"exit {code}"
    if state in _BROKEN:
        raise NotReady(f"{container.name}: systemd is {state}")
    return state in _UP, state


def _start(handle: docker.Client, image: str, name: str, label: str) -> docker.Container:
    for _ in range(PORT_ATTEMPTS):
        try:
            return docker.run_systemd_container(handle, image, name, _free_port(), NETWORK, label)
        except docker.PortTaken:
            continue
    raise HostError(name, f"no free 127.0.0.1 port after {PORT_ATTEMPTS} attempts")


def _free_port() -> int:
    # A fixed port (not docker's random one) survives container restarts, and so do the
    # known_hosts and inventory entries keyed by it. Losing a race is retried in _start.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _remove_set(handle: docker.Client, name_prefix: str | None) -> list[str]:
    containers = docker.labelled(handle, name_prefix)
    for container in containers:
        docker.remove(container)
    return sorted(c.name for c in containers)
