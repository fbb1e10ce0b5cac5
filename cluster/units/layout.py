"""Where things live on an agent host: one place for every path and name the units use."""

from __future__ import annotations

from pathlib import PurePosixPath

BASE = PurePosixPath("/opt/claude-cluster")
RELEASES = BASE / "releases"
CURRENT = BASE / "current"  # a symlink to the active release
PREVIOUS = BASE / "previous"  # a symlink to the release before it (rollback's target)
WORKSPACE = BASE / "workspace"
LOGS = BASE / "logs"
WHEELS = BASE / "wheels"
STATE_DIR = PurePosixPath("/var/lib/claude-cluster")  # the service user's HOME
# The pinned Claude Code CLI (cluster/deploy/claudecli.py), shipped only where an agent uses the
# `claude-code` executor: unpacked once per version and checksum into CLI_ROOT/<version>-<sha12>
# (an npm prefix: bin/claude, lib/node_modules/@anthropic-ai/claude-code), shared by releases;
# each release links to its own as <release>/claude-code, so `current` (and rollback) pick it.
CLI_ROOT = BASE / "claude-code"
CLI_LINK = "claude-code"  # the link's name inside a release
CLI_BINARY = CURRENT / CLI_LINK / "bin" / "claude"
# The PATH of an agent unit that uses the claude-code executor: the release's CLI first, then
# systemd's default search path.
AGENT_PATH = f"{CLI_BINARY.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The state repo's deploy key, known_hosts and ssh config, where ssh looks for them. Root-owned
# (the agent only reads them) and read-only in the agent's unit and container, so the agent's
# user can neither change them nor move the directory aside.
SSH_DIR = STATE_DIR / ".ssh"
ETC = PurePosixPath("/etc/claude-cluster")
AGENT_CONFIG = ETC / "agent.yaml"
SECRETS_ENV = ETC / "secrets.env"  # root's, mode 0600: systemd passes it on as a credential
SECRETS_CREDENTIAL = "secrets.env"  # its name in the agent's $CREDENTIALS_DIRECTORY
EVENTS_FILE = LOGS / "events.jsonl"

SERVICE_USER = "claude-cluster"
UNIT_NAME = "claude-cluster-agent.service"
UNIT_PATH = PurePosixPath("/etc/systemd/system") / UNIT_NAME
EXECUTABLE = CURRENT / "venv" / "bin" / "claude-cluster"
WRITABLE = (WORKSPACE, LOGS, STATE_DIR)
CONTAINER_NAME = "claude-cluster-agent"


def container_name(agent: str) -> str:
    """``claude-cluster-agent-<agent>``: the agent container, named the same by deploy, health,
    logs and the day-two verbs (unique even when one engine stands in for several hosts)."""
    return f"{CONTAINER_NAME}-{agent}"


def agent_argv(config_path: PurePosixPath = AGENT_CONFIG) -> list[str]:
    """The agent's command line, the same under systemd and in a container."""
    return [str(EXECUTABLE), "agent", "run", "--config", str(config_path)]
