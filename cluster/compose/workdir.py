"""The compose cluster's files on the control host, made once and kept (a converged up writes
nothing that changes): keys, pinned host keys, the state repo, agent settings, the secrets file.

Everything sits under one directory of mode 0700 (``.cluster/compose/<project>``); the compose
file bind-mounts what each service needs from it. Keys are made once and kept, so the agents'
known_hosts and the operator's stay pinned across ``up``s and restarts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster.atomicfile import write_atomic
from cluster.deploy.image import UID
from cluster.hooks.install import HOOKS_DIR, SERVER_HOOKS, install_into
from cluster.secret import Secret
from cluster.state.init import init_state_repo
from cluster.transport.openssh import ssh_command
from cluster.transport.sshkeys import generate_keypair, known_hosts_lines, parse_public_keys
from cluster.units.seccomp import profile
from cluster.units.secrets_env import SECRET_NAMES, render_secrets_env

STATE_SERVICE = "state"  # the service's DNS name on the project's network
STATE_PATH = "/srv/state.git"
REPOS_PATH = "/srv/repos"  # bare target repos the state service serves too
IMAGE_PYTHON = "/opt/claude-cluster/venv/bin/python"  # what the hooks run with in the image
# Fast enough for a trial, gentle on one host: the repo's settings when it is created.
STATE_SETTINGS = b"heartbeat_seconds: 5\nlease_seconds: 60\nfold_delay_seconds: 5\n"
# Each key may run git's transport commands on the state service and nothing else: no shell,
# no forwarding, no pty (git-shell refuses every command but git-receive-pack/upload-pack).
KEY_OPTIONS = 'restrict,command="/usr/bin/git-shell -c \\"$SSH_ORIGINAL_COMMAND\\""'
AGENT_DEFAULTS: dict[str, Any] = {
    "stop_grace_seconds": 30.0,
    "allowed_repo_prefixes": [f"ssh://root@{STATE_SERVICE}{REPOS_PATH}/"],
}


@dataclass(frozen=True)
class WorkDir:
    """Where each file of one compose cluster lives on the control host."""

    root: Path

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def host_key(self) -> Path:
        return self.ssh / "state_host_ed25519_key"

    @property
    def agent_key(self) -> Path:
        return self.ssh / "agents_ed25519"

    @property
    def operator_key(self) -> Path:
        return self.ssh / "operator_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh / "authorized_keys"

    @property
    def agents_known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def operator_known_hosts(self) -> Path:
        return self.ssh / "operator_known_hosts"

    @property
    def state_repo(self) -> Path:
        return self.root / "state.git"

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def agent_yaml(self) -> Path:
        return self.root / "agent.yaml"

    @property
    def secrets_env(self) -> Path:
        return self.root / "secrets.env"

    @property
    def seccomp(self) -> Path:
        return self.root / "seccomp.json"

    @property
    def serve_token(self) -> Path:
        """The dashboard's bearer token (``claude-cluster serve --token-file``)."""
        return self.root / "serve_token"

    def operator_ssh(self) -> str:
        """The operator's ssh command for the state repo (as ``GIT_SSH_COMMAND``)."""
        return ssh_command(self.operator_key, self.operator_known_hosts)

    @staticmethod
    def operator_url(port: int) -> str:
        return f"ssh://root@127.0.0.1:{port}{STATE_PATH}"


def _key(path: Path, comment: str) -> None:
    if not path.is_file() or not path.with_suffix(".pub").is_file():
        generate_keypair(path, comment)


def _agents_can_read(key: Path) -> None:
    """A file the agent user (uid 10001) reads through its bind mount (the agents' key, the
    dashboard's token): theirs and 0600 when we can give it away (root), else 0644 under the
    0700 work dir (ssh accepts a key another user owns; nobody else on this host reaches the
    directory)."""
    if os.geteuid() == 0:
        os.chown(key, UID, UID)
        key.chmod(0o600)
    else:
        key.chmod(0o644)


def _agent_yaml(overrides: Mapping[str, Any]) -> str:
    body = {**AGENT_DEFAULTS, **overrides}
    return ("# The agents' settings (claude-cluster agent run --config); written once by "
            "invoke compose.up, yours to edit.\n# id, state, specialties and metrics_port "
            "come from the compose file's environment.\n"
            + yaml.safe_dump(body, sort_keys=False))  # fmt: skip


def prepare(root: Path, state_port: int, agent: Mapping[str, Any] | None = None,
            settings: bytes = STATE_SETTINGS,
            environ: Mapping[str, str] | None = None) -> WorkDir:
    """Make what is missing under ``root``; files already there are kept as they are.

    ``agent`` goes into a new agent.yaml, ``settings`` into a new state repo; a new
    secrets.env takes the :data:`SECRET_NAMES` set in ``environ`` (default: this process's);
    a new serve_token (the dashboard's) is random.
    """
    work = WorkDir(root)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    _key(work.host_key, "claude-cluster compose state host")
    _key(work.agent_key, "claude-cluster compose agents")
    _key(work.operator_key, "claude-cluster compose operator")
    _agents_can_read(work.agent_key)
    work.host_key.chmod(0o644)  # the state entrypoint copies it to a 0600 file of root's
    restricted = [f"{KEY_OPTIONS} {kind} {blob}"
                  for pub in (work.agent_key, work.operator_key)
                  for kind, blob in parse_public_keys(pub.with_suffix(".pub").read_text())]
    write_atomic(work.authorized_keys, "".join(f"{line}\n" for line in restricted))
    host = parse_public_keys(work.host_key.with_suffix(".pub").read_text())
    write_atomic(work.agents_known_hosts, _lines(known_hosts_lines(STATE_SERVICE, host)))
    write_atomic(work.operator_known_hosts,
                 _lines(known_hosts_lines(f"[127.0.0.1]:{state_port}", host)))
    write_atomic(work.seccomp, profile())
    if not (work.state_repo / "HEAD").exists():
        init_state_repo(work.state_repo, settings=settings)
    install_hooks_for_image(work.state_repo)
    work.repos.mkdir(exist_ok=True)
    if not work.agent_yaml.exists():
        write_atomic(work.agent_yaml, _agent_yaml(agent or {}))
    if not work.secrets_env.exists():
        env = os.environ if environ is None else environ
        given = {name: Secret(env[name]) for name in SECRET_NAMES if env.get(name)}
        write_atomic(work.secrets_env, render_secrets_env(given).text.reveal(), mode=0o600)
    if not work.serve_token.exists():
        write_atomic(work.serve_token, f"{secrets.token_urlsafe(32)}\n", mode=0o600)
    _agents_can_read(work.serve_token)
    return work


def install_hooks_for_image(repo: Path) -> None:
    """The project's server hooks, run by the image's interpreter inside the state service."""
    install_into(repo / "hooks", HOOKS_DIR, SERVER_HOOKS, python=IMAGE_PYTHON)


def _lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)
