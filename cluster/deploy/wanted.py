"""What a host should have: files (checksummed, owned, secrets masked), directories, a release."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.agent.config import AgentConfig
from cluster.deploy.claudecli import CliPack
from cluster.deploy.wheels import WheelSet
from cluster.inventory.model import HostSpec
from cluster.secret import MASK, Secret
from cluster.units import layout
from cluster.units.agent_yaml import agent_config, render_agent_config
from cluster.units.secrets_env import agent_needs, render_secrets_env
from cluster.units.systemd import render_unit, unit_spec

ROOT = "root"
USER = layout.SERVICE_USER


@dataclass(frozen=True)
class FileSpec:
    """One file to converge; ``body`` is revealed only to write it, ``shown`` is for diffs."""

    path: str
    body: Secret
    mode: int
    owner: str
    group: str
    secret: bool
    sha256: str
    shown: str
    restarts: bool = True  # a change means the agent must restart to see it

    @property
    def ownership(self) -> tuple[int, str, str]:
        return self.mode, self.owner, self.group


@dataclass(frozen=True)
class DirSpec:
    path: str
    mode: int
    owner: str
    group: str

    @property
    def ownership(self) -> tuple[int, str, str]:
        return self.mode, self.owner, self.group


@dataclass(frozen=True)
class Wanted:
    """The converged state of one host."""

    host: str
    release: str
    version: str
    wheels: WheelSet
    files: tuple[FileSpec, ...]
    dirs: tuple[DirSpec, ...]
    cli: CliPack | None = None  # the pinned Claude Code CLI, where the agent uses claude-code

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return tuple(f.body for f in self.files if f.secret)


DIRS = (
    DirSpec(str(layout.BASE), 0o755, ROOT, ROOT),
    DirSpec(str(layout.RELEASES), 0o755, ROOT, ROOT),
    DirSpec(str(layout.WHEELS), 0o755, ROOT, ROOT),
    DirSpec(str(layout.WORKSPACE), 0o700, USER, USER),
    DirSpec(str(layout.LOGS), 0o750, USER, USER),
    DirSpec(str(layout.STATE_DIR), 0o700, USER, USER),
    DirSpec(str(layout.SSH_DIR), 0o750, ROOT, USER),  # the agent reads it, never writes it
    DirSpec(str(layout.ETC), 0o750, ROOT, USER),
)


def plain_file(path: str, text: str, mode: int, owner: str = ROOT, group: str = ROOT) -> FileSpec:
    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    return FileSpec(path, Secret(text), mode, owner, group, False, digest, text)


def secret_file(
    path: str, text: Secret, shown: str, mode: int = 0o600, group: str = ROOT
) -> FileSpec:
    """Root's file, never the service user's: it can at most read one (``group``)."""
    digest = hashlib.sha256(text.reveal().encode()).hexdigest()
    return FileSpec(path, text, mode, ROOT, group, True, digest, shown)


def wanted_state(
    host: HostSpec,
    wheels: WheelSet,
    secrets: Mapping[str, Secret],
    agent: Mapping[str, Any],
    state_key: Secret | None = None,
    state_known_hosts: str | None = None,
    ssh_config: str | None = None,
    cli: CliPack | None = None,
) -> Wanted:
    """The files and release ``host`` should have; pure apart from nothing (no I/O here).

    ``cli`` goes to the host only when its agent uses the claude-code executor.
    """
    config = agent_config(host, **agent)
    needs = agent_needs(config)
    env = render_secrets_env(needs.shipped(secrets), needs.required)
    files = [
        plain_file(str(layout.UNIT_PATH), render_unit(unit_spec(config)), 0o644),
        plain_file(str(layout.AGENT_CONFIG), render_agent_config(config), 0o640, ROOT, USER),
        secret_file(str(layout.SECRETS_ENV), env.text, env.masked),
    ]
    # secrets.env: root's alone (systemd reads it); ssh accepts a key that is not the user's
    # own at 0640, and a config or known_hosts owned by root.
    if state_key is not None:
        masked = f"{MASK} (private key, sha256 {_short(state_key)})\n"
        key = str(layout.SSH_DIR / "id_ed25519")
        files.append(secret_file(key, state_key, masked, 0o640, USER))
    if state_known_hosts is not None:
        files.append(plain_file(str(layout.SSH_DIR / "known_hosts"), state_known_hosts, 0o644))
    if ssh_config is not None:
        files.append(plain_file(str(layout.SSH_DIR / "config"), ssh_config, 0o644))
    shipped = cli if uses_claude_code(config) else None
    return Wanted(host.name, wheels.release, wheels.version, wheels, tuple(files), DIRS, shipped)


def uses_claude_code(config: AgentConfig) -> bool:
    """The agent runs the Claude Code CLI: its host gets the pinned one."""
    return "claude-code" in config.executors


# Agents reach the state repo with a new ssh per git command (several a second with short
# polls); a master connection per state host saves those handshakes on both ends. Keep-alives
# find a dead link within seconds, after which the next command connects afresh. The sockets
# live in the agent's private /tmp (PrivateTmp=, the container's tmpfs): ~/.ssh is read-only
# to the agent, and no sandbox sees that /tmp.
MULTIPLEX_SSH_CONFIG = """# Written by claude-cluster deploy: one connection per state host, reused.
Host *
    ControlMaster auto
    ControlPath /tmp/ssh-cm-%C
    ControlPersist 60
    ServerAliveInterval 3
    ServerAliveCountMax 2
"""


def read_state_access(
    key: Path | None, known_hosts: Path | None
) -> tuple[Secret | None, str | None]:
    """The deploy key (a Secret) and known_hosts text the agents reach the state repo with."""
    secret = Secret(key.read_text(encoding="utf-8")) if key is not None else None
    known = known_hosts.read_text(encoding="utf-8") if known_hosts is not None else None
    return secret, known


def _short(secret: Secret) -> str:
    return hashlib.sha256(secret.reveal().encode()).hexdigest()[:12]
