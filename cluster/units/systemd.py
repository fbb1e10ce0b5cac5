"""The hardened systemd unit of an agent, rendered from a small typed spec."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.agent_schema import AgentConfig
from cluster.units import layout

# Beyond the agent's own stop grace, time for Python to exit and systemd to reap the group.
STOP_MARGIN_SECONDS = 15
_PLAIN = re.compile(r"^[A-Za-z0-9_./:=@+,%$-]+$")  # after % and $ are doubled

Section = list[tuple[str, str]]
SYSCALL_FILTER = "@system-service @mount sethostname"  # cluster/units/seccomp.py: the same


@dataclass(frozen=True)
class UnitSpec:
    """What varies between agent units; everything else is fixed hardening."""

    description: str
    user: str = layout.SERVICE_USER
    stop_grace_seconds: float = 30.0
    restart_seconds: int = 5
    path: str | None = None  # PATH=, set where the agent runs the release's Claude Code CLI

    @property
    def timeout_stop_seconds(self) -> int:
        """Longer than the agent's grace, so SIGKILL never cuts a clean release short."""
        return math.ceil(self.stop_grace_seconds) + STOP_MARGIN_SECONDS


def unit_spec(config: AgentConfig) -> UnitSpec:
    return UnitSpec(
        description=f"Claude Code Cluster agent {config.id}",
        stop_grace_seconds=config.stop_grace_seconds,
        path=layout.AGENT_PATH if "claude-code" in config.executors else None,
    )


def quote_argv(argv: Sequence[str]) -> str:
    """An ExecStart= command line: systemd's quoting, with % and $ escaped (no expansion)."""
    return " ".join(_quote(arg) for arg in argv)


def _quote(arg: str) -> str:
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sections(spec: UnitSpec) -> dict[str, Section]:
    """The unit as ordered (key, value) pairs per section; keys may repeat."""
    unit: Section = [
        ("Description", spec.description),
        ("Wants", "network-online.target"),
        ("After", "network-online.target"),
    ]
    service: Section = [
        ("Type", "exec"),
        ("User", spec.user),
        ("Group", spec.user),
        ("ExecStart", quote_argv(layout.agent_argv())),
        # Read by systemd as root into $CREDENTIALS_DIRECTORY: never in the environment (so
        # never in /proc/<pid>/environ) and never owned by the agent's user.
        ("LoadCredential", f"{layout.SECRETS_CREDENTIAL}:{layout.SECRETS_ENV}"),
        ("Environment", f"HOME={layout.STATE_DIR}"),
        ("Environment", "PYTHONUNBUFFERED=1"),
        *([("Environment", f"PATH={spec.path}")] if spec.path else []),
        ("WorkingDirectory", str(layout.WORKSPACE)),
        ("Restart", "on-failure"),
        ("RestartSec", str(spec.restart_seconds)),
        # SIGTERM to the agent only: it cancels its tasks and releases them uncounted; with
        # control-group a task's child died of the same SIGTERM first and burnt an attempt.
        # Whatever is left when the agent exits is SIGKILLed.
        ("KillMode", "mixed"),
        ("KillSignal", "SIGTERM"),
        ("TimeoutStopSec", str(spec.timeout_stop_seconds)),
        ("UMask", "0077"),
        *_hardening(),
    ]
    return {"Unit": unit, "Service": service, "Install": [("WantedBy", "multi-user.target")]}


def _hardening() -> Section:
    """As tight as the sandbox (bubblewrap, cluster/sandbox/) still runs under; each option was
    tried on a Debian 12 host (systemd 252): see docs/security.md for what was left out and why."""
    return [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("ReadWritePaths", " ".join(str(path) for path in layout.WRITABLE)),
        ("ReadOnlyPaths", str(layout.SSH_DIR)),  # a mount point: it cannot be moved aside
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DevicePolicy", "closed"),
        ("PrivateIPC", "yes"),
        ("RemoveIPC", "yes"),
        ("KeyringMode", "private"),
        ("ProtectProc", "invisible"),  # other users' processes are not in the agent's /proc
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        # No ProtectHostname=: its filter also refuses sethostname in the sandbox's own UTS
        # namespace (bwrap --hostname); with no capabilities the agent cannot rename the host.
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
        # AF_NETLINK: bubblewrap brings up the sandbox's loopback over rtnetlink.
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        # Every kind bubblewrap's --unshare-all creates (leaving out cgroup or uts fails it).
        ("RestrictNamespaces", "user mnt pid net ipc uts cgroup"),
        # @mount: the sandbox's mount namespace (mount, pivot_root, umount2); sethostname: its
        # UTS namespace's name; @resources stays (setrlimit, setpriority: its limits, niceness).
        ("SystemCallFilter", SYSCALL_FILTER),
        ("SystemCallErrorNumber", "EPERM"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ]


def render_unit(spec: UnitSpec) -> str:
    """The unit file text (deterministic: same spec, same bytes, same checksum)."""
    blocks = []
    for name, pairs in sections(spec).items():
        lines = [f"[{name}]", *(f"{key}={value}" for key, value in pairs)]
        blocks.append("\n".join(lines) + "\n")
    header = "# Written by claude-cluster deploy; local edits are overwritten.\n"
    return header + "\n".join(blocks)
