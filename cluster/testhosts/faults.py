"""Fault helpers for tests: restart or stop a host, give it a new SSH host key, trust it again."""

from __future__ import annotations

from pathlib import Path

from cluster.atomicfile import write_atomic
from cluster.errors import HostError
from cluster.testhosts.hosts import host_keys, wait_ready
from cluster.testhosts.model import HostRecord
from cluster.testhosts.readiness import poll, ssh_banner
from cluster.transport import docker
from cluster.transport.sshkeys import known_hosts_lines, replace_host

STOP_TIMEOUT = 20
SSHD_TIMEOUT = 60.0


def restart_host(name: str) -> HostRecord:
    """Restart the container (a reboot: systemd shuts down and boots); wait until it is up."""
    container = docker.get(docker.client(), name)
    with docker.translated(f"restart {name}"):
        container.restart(timeout=STOP_TIMEOUT)
    return wait_ready(container)


def stop_host(name: str) -> None:
    """Shut the host down cleanly; its port then refuses connections."""
    container = docker.get(docker.client(), name)
    with docker.translated(f"stop {name}"):
        container.stop(timeout=STOP_TIMEOUT)


def start_host(name: str) -> HostRecord:
    """Boot a stopped host again and wait until it is up."""
    container = docker.get(docker.client(), name)
    with docker.translated(f"start {name}"):
        container.start()
    return wait_ready(container)


def regenerate_host_key(name: str) -> list[tuple[str, str]]:
    """Replace the host's SSH host keys and restart sshd; known_hosts is left stale on purpose.

    Returns the new keys. sshd has answered on its port again when this returns.
    """
    container = docker.get(docker.client(), name)
    steps = (
        ["find", "/etc/ssh", "-maxdepth", "1", "-name", "ssh_host_*", "-delete"],
        ["ssh-keygen", "-A"],
        ["systemctl", "restart", "ssh.service"],
    )
    for argv in steps:
        code, out, err = docker.exec_argv(container, argv)
        if code != 0:
            raise HostError(name, f"{argv[0]} failed (exit {code}): {(err or out).strip()}")
    port = docker.published_port(container)
    poll(lambda: ssh_banner(port), what=f"{name} sshd after new host key", timeout=SSHD_TIMEOUT)
    return host_keys(container)


def trust_current_host_key(name: str, known_hosts: Path) -> None:
    """Record the host's present keys in ``known_hosts`` (read over docker exec)."""
    container = docker.get(docker.client(), name)
    entry = f"[127.0.0.1]:{docker.published_port(container)}"
    current = known_hosts.read_text(encoding="utf-8") if known_hosts.exists() else ""
    lines = known_hosts_lines(entry, host_keys(container))
    write_atomic(known_hosts, replace_host(current, entry, lines))
