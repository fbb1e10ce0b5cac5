"""The deploy lock: a second holder is refused and named; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.deploy.lock import DeployLocked, deploy_lock

HOLD = """
import sys, time
from pathlib import Path
from cluster.deploy.lock import deploy_lock
with deploy_lock(Path(sys.argv[1]), "deploy"):
    print("held", flush=True)
    time.sleep(120)
"""
ROOT = Path(__file__).resolve().parents[2]


def holder_process(lock: Path) -> subprocess.Popen[str]:
    """Another process holding ``lock``; returns once it says it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the child holds the lock or dies
    assert line.strip() == "held", f"holder exited {proc.poll()} before taking the lock"
    return proc


def test_a_second_holder_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    lock = tmp_path / "deploy.lock"
    proc = holder_process(lock)
    try:
        with pytest.raises(DeployLocked) as caught, deploy_lock(lock, "rollback"):
            pass
    finally:
        proc.kill()
        proc.wait()
    message = str(caught.value)
    assert f"deploy holds the lock: pid {proc.pid} on " in message
    assert "try again when it ends" in message


def test_a_second_holder_in_the_same_process_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "deploy.lock"
    refused = pytest.raises(DeployLocked, match=f"pid {os.getpid()}")
    with deploy_lock(lock, "deploy"), refused, deploy_lock(lock, "deploy"):
        pass


def test_a_stale_lock_of_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "deploy.lock"
    proc = holder_process(lock)
    proc.send_signal(signal.SIGKILL)  # no cleanup: its holder record stays behind
    proc.wait()
    holder = lock.with_name(lock.name + ".holder")
    assert json.loads(holder.read_text())["pid"] == proc.pid
    with deploy_lock(lock, "deploy"):
        assert json.loads(holder.read_text())["pid"] == os.getpid()
    assert not holder.exists()


def test_the_lock_is_released_after_an_error(tmp_path: Path) -> None:
    lock = tmp_path / "deploy.lock"
    with pytest.raises(RuntimeError), deploy_lock(lock):
        raise RuntimeError("deploy broke")
    with deploy_lock(lock):
        assert lock.with_name(lock.name + ".holder").exists()
