"""Reads agents' heartbeats (refs/agents/<id>) from the state repo, from the control host."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import yaml

from cluster.errors import ClusterError
from cluster.state.gitcmd import git_env

AGENTS = "refs/agents/"
MIN_INTERVAL = 0.5  # threads polling together share one ls-remote per interval


def multiplexed(ssh_command: str, socket_dir: str) -> str:
    """``ssh_command`` reusing one connection: an ls-remote twice a second costs no handshake."""
    if shlex.split(ssh_command)[:1] != ["ssh"]:
        return ssh_command
    return (f"{ssh_command} -o ControlMaster=auto -o ControlPath={socket_dir}/%C "
            "-o ControlPersist=15")  # fmt: skip


@dataclass(frozen=True)
class Beat:
    """What verification needs of a heartbeat."""

    agent: str
    host: str
    pid: int
    state: str
    started_at: float


class HeartbeatReader:
    """One local mirror, one ``ls-remote`` per interval however many hosts are being verified.

    Thread-safe: verification threads share it, git runs under a lock.
    """

    def __init__(self, url: str, mirror: Path, ssh_command: str | None = None) -> None:
        self.url = url
        self.mirror = mirror
        self._sockets = tempfile.mkdtemp(prefix="ccc-hb-")  # short: a socket path has <108 bytes
        weakref.finalize(self, shutil.rmtree, self._sockets, True)
        command = multiplexed(ssh_command, self._sockets) if ssh_command else None
        self.env = git_env({"GIT_SSH_COMMAND": command} if command else None)
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._beats: dict[str, Beat] = {}

    def beat(self, agent: str) -> Beat | None:
        with self._lock:
            if time.monotonic() - self._read_at >= MIN_INTERVAL:
                self._beats = self._read()
                self._read_at = time.monotonic()
            return self._beats.get(agent)

    def _git(self, *args: str, timeout: float = 60.0) -> str:
        argv = ["git", f"--git-dir={self.mirror}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)  # fmt: skip
        if done.returncode != 0:
            raise ClusterError(f"state repo {self.url}: git {args[0]} failed: "
                               f"{done.stderr.strip()[-300:]}")  # fmt: skip
        return done.stdout

    def _read(self) -> dict[str, Beat]:
        if not (self.mirror / "HEAD").exists():
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "--bare", str(self.mirror)], check=True,
                           env=self.env, capture_output=True)  # fmt: skip
        remote = self._refs(self._git("ls-remote", self.url, f"{AGENTS}*"))
        local = self._refs(self._git("for-each-ref", "--format=%(objectname)\t%(refname)", AGENTS))
        if remote != local:
            self._git("fetch", "-q", "--prune", self.url, f"+{AGENTS}*:{AGENTS}*", timeout=120)
            fmt = "--format=%(objectname)\t%(refname)"
            local = self._refs(self._git("for-each-ref", fmt, AGENTS))
        beats = {}
        for agent, sha in local.items():  # what was fetched: refs move every heartbeat
            try:
                beats[agent] = self._parse(agent, sha)
            except (ClusterError, ValueError, TypeError, yaml.YAMLError):
                continue
        return beats

    @staticmethod
    def _refs(listing: str) -> dict[str, str]:
        refs = {}
        for line in listing.splitlines():
            sha, _, ref = line.partition("\t")
            refs[ref.removeprefix(AGENTS)] = sha
        return refs

    def _parse(self, agent: str, sha: str) -> Beat:
        text = self._git("cat-file", "blob", f"{sha}:agent.yaml")
        body = yaml.safe_load(text) or {}
        return Beat(agent, str(body.get("host", "")), int(body.get("pid", 0)),
                    str(body.get("state", "")), _epoch(body.get("started_at")))  # fmt: skip


def _epoch(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
