"""The baseline the deploy and health benchmarks are measured against: a bare ssh fan-out."""

from __future__ import annotations

import subprocess
import time

from cluster.testhosts.model import HostSet
from cluster.transport.openssh import ssh_options


def ssh_fanout(hosts: HostSet) -> float:
    """Wall time of `ssh HOST true` to every host at once (a fresh handshake each)."""
    paths = hosts.paths
    argv = ["ssh", *ssh_options(paths.private_key, paths.known_hosts)]
    started = time.perf_counter()
    procs = [subprocess.Popen([*argv, "-p", str(h.port), "root@127.0.0.1", "true"])
             for h in hosts.hosts]
    codes = [p.wait(timeout=120) for p in procs]
    elapsed = time.perf_counter() - started
    if any(codes):
        raise SystemExit(f"bare ssh failed: exit codes {codes}")
    return elapsed
