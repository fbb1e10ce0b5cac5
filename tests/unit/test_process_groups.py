"""A task's process group is signalled only while its leader is unreaped.

Once the leader is reaped and its group is empty, the kernel may give that pid to any new
process, and one that leads a group of its own (a ``docker exec``, a systemd service, another
attempt's command) would take a kill meant for the finished task: on a busy host with
pid_max 32768 that happens within seconds (it killed test-host agents while the unit tests ran
beside them). Every ``killpg`` must therefore name a group whose leader is still our child.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from cluster.agent.process import run_in_group
from tests.unit.test_tools import marked, wait_until_gone


def unreaped_child(pid: int) -> bool:
    """``pid`` is a process (running or a zombie) whose parent is this test process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Every killpg the module makes: (group, signal, was its leader still our child)."""
    seen: list[tuple[int, int, bool]] = []
    real = os.killpg

    def spy(pgid: int, sig: int) -> None:
        seen.append((pgid, sig, unreaped_child(pgid)))
        real(pgid, sig)

    monkeypatch.setattr(os, "killpg", spy)  # what cluster.agent.process calls
    return seen


@pytest.mark.parametrize("script", [
    "true",  # exits at once
    "exit 3",
    "sleep 600 & echo left-behind",  # leaves a member of its group running
])
def test_a_finished_group_is_killed_before_its_leader_is_reaped(
    tmp_path: Path, kills: list[tuple[int, int, bool]], script: str
) -> None:
    marker = f"ccc-group-{os.getpid()}"
    argv = ["bash", "-c", script.replace("sleep 600", f"exec -a {marker} sleep 600")]
    with (tmp_path / "out").open("wb") as out:
        done = run_in_group(argv, cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=30,
                            output=out)  # fmt: skip
    assert done.returncode == (3 if script == "exit 3" else 0)
    assert kills and all(ours for _, _, ours in kills), kills
    assert kills[-1][1] == signal.SIGKILL
    for pid in marked(marker):  # what it left in its group went with it
        wait_until_gone(pid)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_stopped_group_is_signalled_only_while_its_leader_is_ours(
    tmp_path: Path, kills: list[tuple[int, int, bool]], how: str
) -> None:
    cancel = threading.Event()
    if how == "cancel":
        threading.Timer(0.3, cancel.set).start()
    script = "trap '' TERM; sleep 600 & wait"  # ignores SIGTERM: needs the SIGKILL after grace
    with (tmp_path / "out").open("wb") as out:
        done = run_in_group(["bash", "-c", script], cwd=tmp_path,
                            env={"PATH": os.environ["PATH"]},
                            timeout=0.3 if how == "timeout" else 30, output=out, grace=0.3,
                            cancel=cancel)  # fmt: skip
    assert done.returncode is None and (done.timed_out if how == "timeout" else done.cancelled)
    assert [sig for _, sig, _ in kills][:1] == [signal.SIGTERM]
    assert kills[-1][1] == signal.SIGKILL
    assert all(ours for _, _, ours in kills), kills
