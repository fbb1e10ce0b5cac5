"""Nornir SimpleInventory files for a test-host set: a pure renderer and a file writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from cluster.atomicfile import write_atomic
from cluster.testhosts.model import LOOPBACK, NETWORK, HostRecord, StatePaths

GROUP = "testhosts"


def render_inventory(hosts: Sequence[HostRecord], paths: StatePaths) -> dict[str, str]:
    """Map each SimpleInventory file name (hosts/groups/defaults.yaml) to its YAML text."""
    host_docs: dict[str, Any] = {
        host.name: {
            "hostname": LOOPBACK,
            "port": host.port,
            "username": "root",
            "groups": [GROUP],
            "data": {
                "container": host.name,
                "network_ip": host.address,
                "network": NETWORK,
                "known_hosts_name": host.known_hosts_name,
            },
        }
        for host in hosts
    }
    groups = {GROUP: {"data": {"kind": "docker-systemd-testhost"}}}
    defaults = {
        "username": "root",
        "data": {
            "ssh_key_file": str(paths.private_key),
            "known_hosts_file": str(paths.known_hosts),
        },
    }
    return {
        paths.hosts_file.name: _dump(host_docs),
        paths.groups_file.name: _dump(groups),
        paths.defaults_file.name: _dump(defaults),
    }


def write_inventory(hosts: Sequence[HostRecord], paths: StatePaths) -> None:
    for name, text in render_inventory(hosts, paths).items():
        write_atomic(paths.root / name, text)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False) if doc else "{}\n"
