"""One attempt's bubblewrap sandbox: what its processes see, may write, reach and use up.

A jail is pure data plus :meth:`Jail.wrap`, which turns a command into the ``bwrap`` command
line that runs it sealed. Every process an attempt starts goes through
:func:`cluster.agent.process.run_in_group` with the attempt's jail, so this is the one place
that says what task code can touch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.agent.config import SandboxConfig

BWRAP = "bwrap"
PRLIMIT = "/usr/bin/prlimit"
BRIDGE_PORT = 8377  # inside the jail's own network namespace: nothing else listens there
SANDBOX_USER = "task"
MIB = 1024 * 1024
JAIL_TMP = "/tmp"  # noqa: S108 - the jail's own, private /tmp (a host directory of its own)

# Read-only system directories; /bin, /lib... become symlinks where the host merged them.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Only these parts of /etc: never the agent's own config, secrets or ssh settings.
ETC_ENTRIES = (
    "alternatives", "ssl", "ca-certificates", "ca-certificates.conf", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "hosts",
    "host.conf", "gai.conf", "protocols", "services", "mime.types", "os-release",
    "debian_version", "bash.bashrc", "profile", "inputrc", "magic",
    "python3", "python3.11", "python3.12", "python3.13", "xdg",
)


def sandbox_uid(agent_uid: int) -> int:
    """The uid task code has inside its user namespace: never the agent's own."""
    return 1000 if agent_uid != 1000 else 1001


@dataclass(frozen=True)
class Jail:
    """The sandbox of one attempt.

    ``worktree`` is the only host directory task code may write besides ``home`` and ``tmp``
    (the attempt's private HOME and /tmp, outside the work tree). ``git_dir`` is shown
    read-only at ``worktree/.git``. ``broker_socket`` is the credential broker's unix socket:
    when set, each process starts behind a bridge that serves it on 127.0.0.1:BRIDGE_PORT
    inside the jail's network namespace, the jail's only way out. ``read_only`` are more host
    paths shown read-only (the agent's interpreter, the operator's ``read_only_paths``).
    """

    config: SandboxConfig
    worktree: Path
    home: Path
    tmp: Path
    etc: Path  # holds the jail's own passwd and group (written by prepare)
    git_dir: Path | None = None
    broker_socket: Path | None = None
    read_only: tuple[Path, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def uid(self) -> int:
        return sandbox_uid(os.getuid())

    @property
    def bridged(self) -> bool:
        return self.broker_socket is not None

    def visible(self, path: Path) -> bool:
        """Whether ``path`` exists inside the jail (for PATH filtering)."""
        roots = [Path(d) for d in SYSTEM_DIRS] + [*self.read_only, self.worktree, self.home]
        return path.is_absolute() and any(path.is_relative_to(root) for root in roots)

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` as the jail's processes get it: HOME and TMPDIR private, PATH trimmed to
        directories that exist inside, the bridge's address when there is one."""
        path = [p for p in env.get("PATH", os.defpath).split(os.pathsep)
                if p and self.visible(Path(p))]
        out = {**env, "HOME": str(self.home), "TMPDIR": JAIL_TMP, "USER": SANDBOX_USER,
               "LOGNAME": SANDBOX_USER, "PATH": os.pathsep.join(path) or "/usr/bin:/bin"}
        if self.bridged:
            proxy = f"http://127.0.0.1:{BRIDGE_PORT}"
            out.setdefault("NO_PROXY", "127.0.0.1,localhost,::1")
            if self.config.allow_hosts:
                out.update(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, https_proxy=proxy,
                           http_proxy=proxy)
        return out

    def wrap(self, argv: Sequence[str], cwd: Path) -> list[str]:
        """The bwrap command line that runs ``argv`` in ``cwd`` inside this jail."""
        return [BWRAP, *self._namespaces(), *self._mounts(), "--chdir", str(cwd), "--",
                *self._limits(), *self._bridge(), *argv]

    def _namespaces(self) -> list[str]:
        uid = str(self.uid)
        return ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", uid, "--gid", uid, "--hostname", "sandbox"]

    def _mounts(self) -> list[str]:
        args: list[str] = []
        for name in SYSTEM_DIRS:
            host = Path(name)
            if host.is_symlink():
                args += ["--symlink", str(host.readlink()), name]
            elif host.is_dir():
                args += ["--ro-bind", name, name]
        for entry in ETC_ENTRIES:
            args += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--bind", str(self.tmp), JAIL_TMP]
        for path in self.read_only:  # after the private /tmp, which would hide those under it
            args += ["--ro-bind-try", str(path), str(path)]
        args += ["--bind", str(self.home), str(self.home),
                 "--bind", str(self.worktree), str(self.worktree)]
        if self.git_dir is not None:
            args += ["--ro-bind", str(self.git_dir), str(self.worktree / ".git")]
        if self.broker_socket is not None:
            args += ["--ro-bind", str(self.broker_socket), "/run/cluster/broker.sock"]
        args += ["--ro-bind", str(self.etc / "passwd"), "/etc/passwd",
                 "--ro-bind", str(self.etc / "group"), "/etc/group",
                 "--remount-ro", "/"]  # the jail's own root too: nothing new beside the binds
        return args

    def _limits(self) -> list[str]:
        cfg = self.config
        return [PRLIMIT, f"--data={cfg.memory_mb * MIB}", f"--nproc={cfg.processes}",
                f"--fsize={cfg.file_size_mb * MIB}", f"--nofile={cfg.open_files}", "--core=0",
                "--"]

    def _bridge(self) -> list[str]:
        if not self.bridged:
            return []
        from cluster.sandbox import bridge

        return [self.python, "-I", "-S", "-c", bridge.source(), str(BRIDGE_PORT),
                "/run/cluster/broker.sock", "--"]

    def prepare(self) -> None:
        """Create the jail's private directories and identity files on the host."""
        for path in (self.home, self.tmp, self.etc):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        uid, home = self.uid, self.home
        (self.etc / "passwd").write_text(
            f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"{SANDBOX_USER}:x:{uid}:{uid}:task code:{home}:/bin/bash\n"
            f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", encoding="utf-8")
        (self.etc / "group").write_text(
            f"root:x:0:\n{SANDBOX_USER}:x:{uid}:\nnogroup:x:65534:\n", encoding="utf-8")
