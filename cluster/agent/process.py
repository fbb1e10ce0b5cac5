"""Run a shell command in its own process group, killed whole on timeout or cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class ProcessResult:
    returncode: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.cancelled


def kill_group(pgid: int, grace: float = GRACE_SECONDS,
               leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after ``grace`` seconds.

    The leader is reaped as it goes: an unreaped leader is a zombie that keeps the group
    'alive' to ``killpg(pgid, 0)`` and would make every kill wait the whole grace period.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if leader is not None:
                leader.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


def run_shell(
    command: str,
    cwd: Path,
    timeout: float,
    log_path: Path,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
) -> ProcessResult:
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )
        deadline = started + timeout
        timed_out = cancelled = False
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                timed_out = True
            elif cancel is not None and cancel.is_set():
                cancelled = True
            else:
                continue
            kill_group(proc.pid, leader=proc)
            proc.wait()
            break
        # The leader may be gone while its children live on: end the group either way.
        kill_group(proc.pid, grace=0.5, leader=proc)
        log.write(f"[exit {proc.returncode}{' timeout' if timed_out else ''}]\n".encode())
    return ProcessResult(proc.returncode, timed_out, cancelled, time.monotonic() - started)
