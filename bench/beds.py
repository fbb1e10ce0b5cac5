"""Where a bench's state repo lives when it is not on this machine: a test state host over SSH
(``host_bed``), or a repo the operator names (``url_bed``). bench/fleet.py and bench/claims.py
both run on these; a local repo's bed is each bench's own (they measure it differently)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster.deploy.heartbeats import multiplexed

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Bed:
    url: str
    env: dict[str, str]  # what the bench's own git needs to reach ``url`` (GIT_SSH_COMMAND)
    local: Path | None  # the repo's files here (local runs), for the hooks' CPU and the checker
    cpu: Callable[[], float]  # CPU seconds the state host used so far
    cpu_what: str
    fetch_copy: Callable[[Path], Path]  # a bare copy of the repo at dest, for the checker
    ssh_command: str | None = None  # over SSH: what each agent multiplexes on its own socket


@contextmanager
def host_bed(work: Path, settings: bytes, prefix: str = "ccc-fleet-state") -> Iterator[Bed]:
    """A fresh test host serving the state repo over SSH as a production state host serves it:
    the server hooks and the judge server (cluster.testhosts.statehost); removed afterwards."""
    from cluster import layers
    from cluster.deploy.wheels import build_wheels
    from cluster.testhosts.hosts import down
    from cluster.testhosts.statehost import start_state_host
    from cluster.transport import docker

    wheels = build_wheels(ROOT, ROOT / layers.WORK_DIR / "wheels")
    state = start_state_host(work, prefix=prefix, settings=settings, wheels=wheels.directory)
    try:
        container = docker.get(docker.client(), state.record.name)
        # As deployed agents reach a state host: over one reused connection (deploy's ssh
        # config); a fresh handshake per git command ran into sshd's MaxStartups at 16 agents
        # and measured handshakes.
        env = {"GIT_SSH_COMMAND": own_connection(state.control_ssh_command, work / "ssh-bench")}
        yield Bed(state.control_url, env, None, lambda: docker.cpu_seconds(container),
                  "state host container's cgroup CPU (all of it)",
                  lambda dest: mirror(state.control_url, env, dest),
                  state.control_ssh_command)
    finally:
        down(prefix)


@contextmanager
def url_bed(url: str) -> Iterator[Bed]:
    """A state repo at ``url`` the operator set up, reached with this environment's ssh."""
    env = {k: v for k, v in os.environ.items() if k == "GIT_SSH_COMMAND"}
    yield Bed(url, env, None, lambda: 0.0, "not measured (--state-url: use --host)",
              lambda dest: mirror(url, env, dest))


def own_connection(ssh_command: str, sockets: Path) -> str:
    """``ssh_command`` over one reused connection, its socket in the new dir ``sockets``.

    Each simulated agent gets one, as each deployed agent host has one: agents sharing a
    connection would pass sshd's MaxSessions (10 a connection), and every session it refused
    would cost a full handshake.
    """
    sockets.mkdir(mode=0o700)
    return multiplexed(ssh_command, str(sockets))


def mirror(url: str, env: dict[str, str], dest: Path) -> Path:
    """A bare mirror of ``url`` at ``dest``: main and the claim refs as the checker reads them."""
    subprocess.run(["git", "clone", "--quiet", "--mirror", url, str(dest)], check=True,
                   env={**os.environ, **env})
    return dest
