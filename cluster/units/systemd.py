"""The hardened systemd unit of an agent, rendered from a small typed spec."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.agent.config import AgentConfig
from cluster.units import layout

# Beyond the agent's own stop grace, time for Python to exit and systemd to reap the group.
STOP_MARGIN_SECONDS = 15
_PLAIN = re.compile(r"^[A-Za-z0-9_./:=@+,%$-]+$")  # after % and $ are doubled

Section = list[tuple[str, str]]


@dataclass(frozen=True)
class UnitSpec:
    """What varies between agent units; everything else is fixed hardening."""

    description: str
    user: str = layout.SERVICE_USER
    stop_grace_seconds: float = 30.0
    restart_seconds: int = 5

    @property
    def timeout_stop_seconds(self) -> int:
        """Longer than the agent's grace, so SIGKILL never cuts a clean release short."""
        return math.ceil(self.stop_grace_seconds) + STOP_MARGIN_SECONDS


def unit_spec(config: AgentConfig) -> UnitSpec:
    return UnitSpec(
        description=f"Claude Code Cluster agent {config.id}",
        stop_grace_seconds=config.stop_grace_seconds,
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
        ("EnvironmentFile", str(layout.SECRETS_ENV)),
        ("Environment", f"HOME={layout.STATE_DIR}"),
        ("Environment", "PYTHONUNBUFFERED=1"),
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
    return [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("ReadWritePaths", " ".join(str(path) for path in layout.WRITABLE)),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
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
