"""An agent's sandboxes: one jail per attempt, what every jail may see, and the start-up check
that refuses to run task code where no jail can be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from cluster.agent.config import SandboxConfig
from cluster.errors import ClusterError, ConfigError
from cluster.sandbox.jail import BWRAP, PRLIMIT, Jail
from cluster.sandbox.programs import interpreter_paths

CHECK_TIMEOUT = 30.0
# What the check runs inside a jail: it must see only its own processes (a fresh /proc of
# its own PID namespace), no network but loopback, and none of the agent's files.
CHECK_SCRIPT = """
set -e
test "$(id -u)" != "$AGENT_UID"
for pid in /proc/[0-9]*; do test "${pid#/proc/}" -lt 100; done
for path in "$@"; do test ! -e "$path"; done
echo sealed
"""


class SandboxUnavailable(ClusterError):
    """No sandbox can be built here; the agent refuses to run task code (``sandbox: off`` is
    the operator's explicit way out)."""

    exit_code = 2


def protected_paths(home: Path, secrets_file: Path | None = None) -> tuple[Path, ...]:
    """What no jail may show of an agent whose home (work dir) is ``home``: the home itself
    (mirror, logs, other attempts), its secrets, and the settings of its user's ssh, git and
    Claude Code."""
    user = Path.home()
    paths = [home, user / ".ssh", user / ".gitconfig", user / ".config", user / ".claude",
             user / ".claude.json", user / ".netrc", user / ".git-credentials"]
    if secrets_file is not None:
        paths.append(secrets_file)
    if credentials := os.environ.get("CREDENTIALS_DIRECTORY"):
        paths.append(Path(credentials))
    return tuple(p.expanduser().absolute() for p in paths)


def default_sandboxes(home: Path, config: SandboxConfig | None = None,
                      secrets_file: Path | None = None) -> Sandboxes:
    """The sandboxes of the agent whose home is ``home``: jails under ``home/sandboxes``."""
    return Sandboxes(config or SandboxConfig(), home / "sandboxes",
                     protected_paths(home, secrets_file))


def _exposes(candidate: Path, protected: Iterable[Path]) -> Path | None:
    """The protected path that showing ``candidate`` would show too, if any."""
    for path in protected:
        if path == candidate or path.is_relative_to(candidate):
            return path
    return None


@dataclass(frozen=True)
class Sandboxes:
    """Builds the jails of one agent. ``protected`` are the agent's own paths (its work dir,
    secrets file, HOME's ssh and git settings): no jail shows a directory that holds one."""

    config: SandboxConfig
    root: Path
    protected: tuple[Path, ...]
    programs: tuple[Path, ...] = ()  # what the executors' own programs need (program_paths)

    @property
    def off(self) -> bool:
        return self.config.mode == "off"

    def read_only(self) -> tuple[Path, ...]:
        """Host paths every jail shows read-only, beyond the system directories."""
        shown = [p for p in interpreter_paths() if _exposes(p, self.protected) is None]
        asked = [(p, "the executor's program in {path}", "install it elsewhere")
                 for p in self.programs]
        asked += [(p.expanduser().resolve(), "sandbox.read_only_paths: {path}",
                   "name a directory that does not hold it") for p in self.config.read_only_paths]
        for path, what, fix in asked:
            hidden = _exposes(path, self.protected)
            if hidden is not None:
                raise ConfigError(f"{what.format(path=path)} would show the agent's {hidden} "
                                  f"to task code; {fix}")
            shown.append(path)
        return tuple(shown)

    def showing(self, programs: Iterable[Path]) -> Sandboxes:
        """These sandboxes with ``programs`` (see :func:`program_paths`) shown read-only too;
        raises ConfigError at once if one would expose the agent."""
        more = replace(self, programs=(*self.programs, *programs))
        more.read_only()
        return more

    def jail(
        self, name: str, worktree: Path, *, git_dir: Path | None = None,
        broker_socket: Path | None = None,
    ) -> Jail | None:
        """The prepared jail ``name`` (one attempt) around ``worktree``; None when off."""
        if self.off:
            return None
        base = self.root / name
        shutil.rmtree(base, ignore_errors=True)
        jail = Jail(self.config, worktree.resolve(), base / "home", base / "tmp", base / "etc",
                    git_dir=git_dir, broker_socket=broker_socket, read_only=self.read_only())
        jail.prepare()
        return jail

    def remove(self, name: str) -> None:
        """Remove a jail's private HOME and tmp (what the CLI and task code left there)."""
        shutil.rmtree(self.root / name, ignore_errors=True)

    def socket_dir(self) -> Path:
        """A short private directory for a broker socket (unix socket paths are short)."""
        return Path(tempfile.mkdtemp(prefix="ccc-broker-"))

    def check(self) -> None:
        """Build a jail and run :data:`CHECK_SCRIPT` in it; raise why not when it fails."""
        if self.off:
            return
        for tool in (BWRAP, PRLIMIT):
            if shutil.which(tool) is None:
                raise SandboxUnavailable(
                    f"sandbox: {tool} is not installed (Debian: apt-get install "
                    f"{'bubblewrap' if tool == BWRAP else 'util-linux'}); the agent will "
                    "not run task code unsealed unless its config says sandbox: off")
        self.read_only()  # a read_only_paths entry that would expose the agent fails here
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix="check-") as scratch:
            tree = Path(scratch) / "tree"
            tree.mkdir()
            jail = self.jail(f"{Path(scratch).name}-jail", tree)
            assert jail is not None
            try:
                self._run_check(jail)
            finally:
                self.remove(f"{Path(scratch).name}-jail")

    def _run_check(self, jail: Jail) -> None:
        env = jail.environment({"PATH": "/usr/bin:/bin", "AGENT_UID": str(os.getuid())})
        hidden = [str(p) for p in self.protected
                  if p.exists() and not jail.worktree.is_relative_to(p)]
        argv = ["sh", "-c", CHECK_SCRIPT, "check", *hidden]
        try:
            done = subprocess.run(jail.wrap(argv, jail.worktree), env=env,
                                  capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"sandbox: bwrap could not run: {exc}") from exc
        if done.returncode != 0 or "sealed" not in done.stdout:
            detail = (done.stderr.strip() or done.stdout.strip() or "no output")[-500:]
            raise SandboxUnavailable(
                f"sandbox: bwrap cannot seal task code here (exit {done.returncode}: {detail}). "
                "It needs unprivileged user namespaces and a fresh /proc (in a container: "
                "--security-opt seccomp=unconfined, apparmor=unconfined, "
                "systempaths=unconfined); see docs/security.md. The agent will not run task "
                "code unsealed unless its config says sandbox: off")
