"""The agent as a container (runtime: container): a typed spec and the docker SDK's run kwargs."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.agent_schema import AgentConfig
from cluster.secret import Secret
from cluster.units import layout
from cluster.units.seccomp import profile
from cluster.units.systemd import unit_spec

# In the image the package is installed on PATH; the config sits where systemd hosts have it.
COMMAND = ("claude-cluster", "agent", "run", "--config", str(layout.AGENT_CONFIG))


@dataclass(frozen=True)
class Mount:
    """A host path bound at the same path in the container."""

    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that decides the container; equal specs mean nothing to recreate."""

    image: str
    hostname: str
    user: str = layout.SERVICE_USER  # use "uid:gid" of the host's service user in production
    name: str = layout.CONTAINER_NAME
    command: tuple[str, ...] = COMMAND
    env_file: str = str(layout.SECRETS_ENV)
    mounts: tuple[Mount, ...] = (
        *(Mount(str(path)) for path in layout.WRITABLE),
        Mount(str(layout.SSH_DIR), read_only=True),  # as ReadOnlyPaths= in the unit
        Mount(str(layout.AGENT_CONFIG), read_only=True),
    )
    # unless-stopped: back after a crash and after a reboot, like an enabled unit.
    restart_policy: str = "unless-stopped"
    read_only_root: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)  # noqa: S108 - a private tmpfs in the container
    # What the sandbox (bubblewrap) needs and no more: the unit's system-call filter in place
    # of docker's default, which refuses an unprivileged process namespaces and mounts; /proc
    # unmasked, or no fresh /proc can be mounted; no AppArmor profile, whose docker-default
    # refuses every mount. See docs/security.md.
    security_opt: tuple[str, ...] = (
        "no-new-privileges:true",
        f"seccomp={profile()}",
        "systempaths=unconfined",
        "apparmor=unconfined",
    )
    cap_drop: tuple[str, ...] = ("ALL",)
    stop_timeout: int = 45
    labels: dict[str, str] = field(default_factory=dict)


def container_spec(
    config: AgentConfig, image: str, user: str = layout.SERVICE_USER
) -> ContainerSpec:
    """The container for an agent: same paths, same stop timeout as its systemd unit."""
    return ContainerSpec(
        image=image,
        hostname=config.id,
        user=user,
        stop_timeout=unit_spec(config).timeout_stop_seconds,
        labels={"claude-cluster.agent": config.id},
    )


def docker_run_kwargs(
    spec: ContainerSpec, environment: Mapping[str, Secret], host_root: str = "/"
) -> dict[str, Any]:
    """Keyword arguments for ``engine.run_container`` (``containers.run``'s, plus docker run's
    ``systempaths=unconfined`` among ``security_opt``; the SDK has no env_file:
    the applier reads ``spec.env_file`` on the host and passes its variables here).
    ``host_root`` is where the container host's ``/`` is for the engine (a scratch directory
    when a local engine stands in for a container host).
    """
    return {
        "image": spec.image,
        "name": spec.name,
        "hostname": spec.hostname,
        "command": list(spec.command),
        "user": spec.user,
        "environment": {name: value.reveal() for name, value in environment.items()},
        "volumes": {
            posixpath.join(host_root, m.path.lstrip("/")): {
                "bind": m.path,
                "mode": "ro" if m.read_only else "rw",
            }
            for m in spec.mounts
        },
        "restart_policy": {"Name": spec.restart_policy},
        "read_only": spec.read_only_root,
        "tmpfs": {path: "rw,noexec,nosuid,size=256m" for path in spec.tmpfs},
        "security_opt": list(spec.security_opt),
        "cap_drop": list(spec.cap_drop),
        "stop_signal": "SIGTERM",
        "init": True,  # reaps the git and executor children the agent leaves behind
        "labels": dict(spec.labels),
        "detach": True,
    }
