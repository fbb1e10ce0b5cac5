"""A real agent whose task attacks it: its environment, its command line, its state repo.

Each attack is run once sealed (it must fail) and once with ``--sandbox off`` (it must work,
or the test proves nothing; the unsealed run must say so in its log and heartbeat)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cluster.state.records import Result
from tests.clients import state_client
from tests.helpers import ROOT, commit_files, make_state, poll, state_url, task_doc, task_files

SECRET = "sk-ant-api03-sealed-agent-key-0123456789abcdef"


def attack(state: str) -> str:
    """Exits 1 when it got at the agent's secrets, command line or state repo (the patterns
    are written so that they do not match the attack's own command lines)."""
    return f"""
    got=0
    cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' \
        | grep -q -e '{SECRET[:-1]}[{SECRET[-1]}]' -e 'agent ru[n]' && got=1
    git ls-remote '{state}' >/dev/null 2>&1 && got=1
    if git clone -q '{state}' /tmp/stolen 2>/dev/null; then
        mkdir -p /tmp/stolen/tasks && printf 'id: spread\\n' > /tmp/stolen/tasks/spread.yaml
        git -C /tmp/stolen add -A && git -C /tmp/stolen -c user.name=x -c user.email=x@x \
            commit -qm spread && git -C /tmp/stolen push -q origin HEAD:main && got=1
    fi
    exit $got
    """


def result(state: Path, tmp_path: Path, key: str) -> Result:
    with state_client(state, tmp_path) as reader:
        snap = reader.snapshot()
        found = snap.result(key)
        assert "spread" not in snap.tasks, "task code pushed a task to the state repo"
    assert found is not None, f"{key} has no result"
    return found


@pytest.mark.parametrize("style", ["path", "file"])
def test_task_code_cannot_reach_the_agent_or_its_state_repo(
    tmp_path: Path, agents: Any, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)  # in the agent's environment, as systemd
    state = make_state(tmp_path, {"fold_delay_seconds": 30})
    url = state_url(state, style)
    commit_files(state, task_files([task_doc("sealed", attack(url), max_attempts=1),
                                    task_doc("unsealed", attack(url), specialty="frontend",
                                             max_attempts=1)]), tmp_path / "person")
    sealed = agents(url, "sealed-agent", exit_when_idle=True)
    assert sealed.wait(120) == 0, sealed.tail()
    got = result(state, tmp_path, "sealed")
    assert got.status == "succeeded", f"the attack got through: {got.reason}"

    unsealed = agents(url, "open-agent", specialty="frontend", exit_when_idle=True,
                      extra=["--sandbox", "off"])
    assert unsealed.wait(120) == 0, unsealed.tail()
    open_result = result(state, tmp_path, "unsealed")
    assert open_result.status == "failed", "unsealed, the attack must work"
    log = Path(open_result.log or "").read_text()
    assert "[unsealed] sandbox off" in log
    assert SECRET not in log
    with state_client(state, tmp_path, work="beats") as reader:
        beats = reader.snapshot().agents
    assert (beats["open-agent"].sandbox, beats["sealed-agent"].sandbox) == ("off", "bwrap")


def test_an_agent_that_cannot_seal_does_not_start(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "git").symlink_to(subprocess.run(["which", "git"], capture_output=True, text=True,
                                             check=True).stdout.strip())
    state = make_state(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state), "--id", "a",
         "--specialty", "backend", "--workdir", str(tmp_path / "w"), "--runner", "scratch"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        env={"PATH": str(bare), "HOME": os.environ.get("HOME", "/root")},
    )
    assert done.returncode == 2, done.stderr
    assert "bwrap is not installed" in done.stderr and "sandbox: off" in done.stderr


def test_a_cancelled_task_stops_its_executor_within_seconds(tmp_path: Path, agents: Any) -> None:
    """`task cancel` fences the holder off: its renewal is refused, the claim is lost, and the
    cancel reaches the executor, whose jail (a setsid child included) is gone in seconds."""
    from cluster.demo import sample_repo
    from tests.unit.test_tools import marked

    def named(name: str) -> list[int]:  # processes whose argv[0] is ``name`` (exec -a)
        found = []
        for pid in marked(name):
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue  # gone meanwhile
            if argv0 == name.encode():
                found.append(pid)
        return found

    marker = f"ccc-cancelled-{os.getpid()}"
    state, target = make_state(tmp_path, {"fold_delay_seconds": 30}), sample_repo(tmp_path)
    command = (f"setsid bash -c 'exec -a {marker} sleep 600' & "
               f"bash -c 'exec -a {marker} sleep 600'")
    commit_files(state, task_files([task_doc("long", command, repo=str(target), timeout=900)]),
                 tmp_path / "person")
    agent = agents(state, "holder", runner="repo", lease=3, heartbeat=0.5,
                   extra=["--pull-request-dir", str(tmp_path / "prs")])
    poll(lambda: len(named(marker)) == 2, 60, lambda: f"the task never ran: {agent.tail()}")
    done = subprocess.run([sys.executable, "-m", "cluster", "task", "cancel", "--state",
                           str(state), "long"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    poll(lambda: not marked(marker), 20, lambda: f"the executor outlived the cancel: "
                                                 f"{marked(marker)}\n{agent.tail()}")
    poll(lambda: agent.saw("claim_lost", "long"), 20, "the agent never saw its claim lost")
    assert result(state, tmp_path, "long").status == "cancelled"
