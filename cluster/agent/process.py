"""Task processes: each leads a process group, killed whole on timeout, on cancel, at exit.

Each gets an environment of its own (:func:`child_env`, never the agent's). In a jail nothing
it started outlives it (the jail's PID namespace dies with its leader); unsealed, what left the
group (``setsid``, double forks) can.

Every process of task code goes through here: the command executor, the Claude Code CLI, the
claude executor's `run_command` and `search` tools, verify commands and the offline
:class:`cluster.agent.runner.CommandRunner`; with a jail (:mod:`cluster.sandbox.jail`), each
runs sealed inside it. The agent's own git on the workspace does not (cluster.state.gitcmd).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from cluster.sandbox.jail import Jail

GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL of a group
CANCEL_POLL = 0.05


@dataclass(frozen=True)
class Finished:
    """How a process group ended: its leader's exit code, or ``None`` when it was stopped."""

    returncode: int | None
    timed_out: bool = False
    cancelled: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def child_env(workspace: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a task's processes: a minimal base plus ``extra``, never the agent's
    own environment (it holds the agent's secrets)."""
    base = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "HOME": str(workspace),
    }
    return {**base, **extra}


def run_in_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    output: BinaryIO,
    errors: BinaryIO | None = None,
    grace: float = GRACE_SECONDS,
    cancel: threading.Event | None = None,
    jail: Jail | None = None,
    stdin: BinaryIO | None = None,
) -> Finished:
    """Run ``argv`` as the leader of a new process group, stdout into ``output`` and stderr into
    ``errors`` (default: ``output`` too), stdin from ``stdin`` (a file; default: nothing);
    inside ``jail`` when one is given.

    On timeout, or when ``cancel`` is set, the whole group gets SIGTERM, then SIGKILL after
    ``grace`` seconds. Whatever the command left running in its group is killed when it exits;
    in a jail, that includes what left the group (``setsid``, double forks): the jail's PID
    namespace dies with its leader.
    """
    started = time.monotonic()
    deadline = started + max(timeout, 0.0)
    if jail is not None:
        argv, env = jail.wrap(argv, cwd), jail.environment(env)
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=output,
        stderr=subprocess.STDOUT if errors is None else errors,
        start_new_session=True,
    )
    try:
        while True:
            left = deadline - time.monotonic()
            wait = max(0.0, min(left, CANCEL_POLL) if cancel else left)
            if _exited(proc.pid, wait):
                break
            timed_out = time.monotonic() >= deadline
            if timed_out or (cancel is not None and cancel.is_set()):
                _stop_group(proc.pid, grace)
                return Finished(None, timed_out, not timed_out, time.monotonic() - started)
    finally:
        # Also reached on KeyboardInterrupt and friends: never leave the group behind. The
        # leader is not reaped yet, so the group id is still this group's (see _signal_group).
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    return Finished(proc.returncode, duration_s=time.monotonic() - started)


def run_shell(
    command: str,
    cwd: Path,
    timeout: float,
    log_path: Path,
    env: Mapping[str, str],
    cancel: threading.Event | None = None,
    jail: Jail | None = None,
) -> Finished:
    """``bash -c command`` through :func:`run_in_group`, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        finished = run_in_group(["bash", "-c", command], cwd=cwd, env=env, timeout=timeout,
                                output=log, cancel=cancel, jail=jail)  # fmt: skip
        ending = "timeout" if finished.timed_out else "cancelled" if finished.cancelled else ""
        log.write(f"[exit {finished.returncode}{' ' + ending if ending else ''}]\n".encode())
    return finished


def _stop_group(leader: int, grace: float) -> None:
    """SIGTERM the group, then wait up to ``grace`` for the leader and every other member to
    exit (the leader stays unreaped, so the group id cannot be given to anyone else)."""
    _signal_group(leader, signal.SIGTERM)
    until = time.monotonic() + grace
    while time.monotonic() < until:
        if _exited(leader, 0.0) and not _others_in_group(leader):
            return
        time.sleep(0.02)


def _exited(pid: int, timeout: float) -> bool:
    """Has child ``pid`` exited, within ``timeout`` seconds? It is left unreaped (a zombie),
    so that its pid, the group's id, stays its own until the caller reaps it."""
    until = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        left = until - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


def _others_in_group(pgid: int) -> bool:
    """Does a live process other than the leader ``pgid`` remain in group ``pgid``?"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal group ``pgid`` (its leader's pid, by start_new_session). Called only while the
    leader is unreaped: once reaped and its group empty, the kernel may give that pid to an
    unrelated process, which may lead a group of its own (on a busy host with pid_max 32768,
    in seconds), and a kill would reach it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
