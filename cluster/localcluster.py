"""A local cluster that keeps running between commands: agents as detached processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ClusterError
from cluster.state.init import init_state_repo

EXEC_SECONDS = 10.0  # from fork to the agent's own command line
STOP_SECONDS = 60.0


@dataclass(frozen=True)
class LocalAgent:
    name: str
    pid: int | None
    running: bool


def _pid_file(root: Path, name: str) -> Path:
    return root / "run" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def agents(root: Path) -> list[LocalAgent]:
    out = []
    for pid_file in sorted((root / "run").glob("*.pid")):
        try:
            pid: int | None = int(pid_file.read_text().strip())
        except ValueError:
            pid = None
        ours = pid is not None and _alive(pid) and _is_agent(pid, pid_file.stem, root)
        out.append(LocalAgent(pid_file.stem, pid, ours))
    return out


def _is_agent(pid: int, name: str, root: Path) -> bool:
    """Is ``pid`` still agent ``name`` of this cluster? A pid file outlives its agent (a crash,
    a reboot), and the kernel reuses pids: a stranger holding it must never get the signal."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    want = [b"agent", b"run", b"--state", str(root / "state.git").encode(), b"--id", name.encode()]
    return any(argv[i : i + len(want)] == want for i in range(len(argv)))


def up(root: Path, count: int, specialties: str, max_tasks: int = 1) -> list[LocalAgent]:
    """Start ``count`` agents (those already running are left alone) on ``root/state.git``."""
    state = root / "state.git"
    if not (state / "HEAD").exists():
        init_state_repo(state)
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    running = {a.name for a in agents(root) if a.running}
    for n in range(1, count + 1):
        name = f"local-{n}"
        if name in running:
            continue
        argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state),
                "--id", name, "--specialty", specialties, "--max-tasks", str(max_tasks),
                "--workdir", str(root / "agents"), "--events", str(root / "logs" / f"{name}.jsonl"),
                "--pull-request-dir", str(root / "pull-requests"), "--allow-local-repos"]
        with (root / "logs" / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        _pid_file(root, name).write_text(f"{proc.pid}\n")
        _exec_done(proc, name, root)
    return agents(root)


def _exec_done(proc: subprocess.Popen[bytes], name: str, root: Path) -> None:
    """Wait (a few milliseconds) until the new process runs the agent, not a copy of us: only
    then does its command line say what it is. One that exits first is reported by agents()."""
    deadline = time.monotonic() + EXEC_SECONDS
    while not _is_agent(proc.pid, name, root) and proc.poll() is None:
        if time.monotonic() > deadline:
            raise ClusterError(f"agent {name} (pid {proc.pid}) did not start within "
                               f"{EXEC_SECONDS:.0f}s; see {root}/logs/{name}.log")
        time.sleep(0.005)


def down(root: Path, timeout: float = STOP_SECONDS) -> list[str]:
    """SIGTERM every local agent (they release what they hold), wait, forget them."""
    stopped = []
    for agent in agents(root):
        if agent.pid is not None and agent.running:
            os.kill(agent.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(agent.pid):
                if time.monotonic() > deadline:
                    raise ClusterError(f"agent {agent.name} (pid {agent.pid}) did not stop "
                                       f"within {timeout:.0f}s; see {root}/logs/{agent.name}.log")
                time.sleep(0.05)
            stopped.append(agent.name)
        _pid_file(root, agent.name).unlink(missing_ok=True)
    return stopped
