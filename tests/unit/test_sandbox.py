"""The jail, attacked from inside: task code that tries to read the agent, leave, or linger."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.agent.config import SandboxConfig
from cluster.agent.process import Finished, run_in_group
from cluster.agent.runner import CommandRunner
from cluster.errors import ConfigError
from cluster.sandbox.jail import BRIDGE_PORT, Jail
from cluster.sandbox.sandboxes import (
    Sandboxes,
    SandboxUnavailable,
    default_sandboxes,
    protected_paths,
)
from tests.helpers import poll
from tests.unit.test_taskrunner import held, task

SECRET = "sk-ant-api03-agent-own-key-0123456789abcdef"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An agent's work dir, with files task code must never see."""
    path = tmp_path / "agent"
    (path / "mirror").mkdir(parents=True)
    (path / "secrets.env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
    return path


@pytest.fixture
def jail(home: Path, tmp_path: Path) -> Iterator[Jail]:
    sandboxes = default_sandboxes(home, SandboxConfig(file_size_mb=1, processes=64))
    tree = home / "workspaces" / "t-a1" / "tree"
    tree.mkdir(parents=True)
    made = sandboxes.jail("t-a1", tree)
    assert made is not None
    yield made
    sandboxes.remove("t-a1")


def run(jail: Jail | None, script: str, cwd: Path, timeout: float = 30.0,
        cancel: threading.Event | None = None) -> tuple[Finished, str]:
    with tempfile.TemporaryFile() as out:
        done = run_in_group(["bash", "-c", script], cwd=cwd, env={"PATH": os.environ["PATH"]},
                            timeout=timeout, output=out, jail=jail, cancel=cancel)
        out.seek(0)
        return done, out.read().decode(errors="replace")


def test_task_code_cannot_read_the_agents_environment_or_command_line(jail: Jail) -> None:
    # A process of the agent's user holding the key in its environment, as systemd gives it
    # to the agent, with the state repo on its command line.
    agent = subprocess.Popen(["bash", "-c", "sleep 300; : --state=/srv/state.git"],
                             env={"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": SECRET})
    try:
        script = ("cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'; "
                  f"cat /proc/{agent.pid}/environ 2>&1; cat /proc/{os.getpid()}/cmdline 2>&1")
        _done, out = run(jail, script, jail.worktree)
        assert SECRET not in out and "/srv/state.git" not in out
        assert "test_sandbox.py" not in out  # the agent's (this test's) command line
        _, unsealed = run(None, script, jail.worktree)
        assert SECRET in unsealed and "/srv/state.git" in unsealed, "the attack must work unsealed"
    finally:
        agent.kill()
        agent.wait()


def test_task_code_sees_only_its_own_processes_as_another_user(jail: Jail) -> None:
    done, out = run(jail, "id -u; ls -d /proc/[0-9]* | wc -l", jail.worktree)
    uid, listed, *_ = out.split()
    assert done.ok, out
    assert int(uid) != os.getuid()
    assert int(listed) < 10, out  # bwrap's init, bash, ls, wc: nothing of the host


def test_only_the_work_tree_home_and_tmp_are_writable_and_the_agent_is_invisible(
    jail: Jail, home: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    script = f"""
    echo work > work.txt && echo home > "$HOME/h" && echo tmp > /tmp/t && echo wrote
    for p in {home}/secrets.env {home}/mirror {outside} /etc/shadow /root/.ssh \
             /etc/claude-cluster; do
        test -e "$p" && echo "visible: $p"
    done
    touch /usr/x 2>/dev/null && echo "wrote /usr"
    touch /etc/x 2>/dev/null && echo "wrote /etc"
    touch /x 2>/dev/null && echo "wrote /x"
    exit 0
    """
    done, out = run(jail, script, jail.worktree)
    assert done.ok, out
    assert "wrote" in out and "visible" not in out and "wrote /" not in out, out
    assert (jail.worktree / "work.txt").read_text() == "work\n"
    assert outside.read_text() == "host file"


def test_no_network_but_loopback_of_its_own(jail: Jail) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        _done, out = run(jail, f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached", jail.worktree)
        assert "reached" not in out
        _unsealed, reached = run(None, f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached",
                                jail.worktree)
        assert "reached" in reached


def _alive(marker: str) -> list[str]:
    done = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return done.stdout.split()


# Each escape writes `up` once it has left the group (after setsid), so the command cannot
# end, and its group be killed, before the escape happened.
ESCAPES = {
    "setsid": "setsid bash -c 'touch up; exec sleep {n}' &",
    "double fork": "(setsid bash -c 'touch up; exec sleep {n}' &) &",
    "nohup": "nohup setsid bash -c 'touch up; exec sleep {n}' >/dev/null 2>&1 & disown",
}
WAIT_UP = "\nuntil [ -e up ]; do sleep 0.01; done; echo started"


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_nothing_outlives_the_command(jail: Jail, escape: str) -> None:
    number = str(31_000_000 + os.getpid() % 100_000)
    done, out = run(jail, ESCAPES[escape].format(n=number) + WAIT_UP, jail.worktree)
    assert done.ok and "started" in out, out
    poll(lambda: not _alive(f"sleep {number}"), 10, f"a 'sleep {number}' outlived its jail")


def test_escaping_the_process_group_works_without_the_jail(tmp_path: Path) -> None:
    """The attack above is real: without the jail, setsid escapes the group kill."""
    number = str(32_000_000 + os.getpid() % 100_000)
    try:
        _done, out = run(None, ESCAPES["setsid"].format(n=number) + WAIT_UP, tmp_path)
        assert "started" in out
        assert _alive(f"sleep {number}")
    finally:
        subprocess.run(["pkill", "-f", f"sleep {number}"], check=False)


def test_timeout_and_cancel_kill_the_whole_jail(jail: Jail) -> None:
    number = str(33_000_000 + os.getpid() % 100_000)
    done, _ = run(jail, f"setsid sleep {number} & sleep {number}", jail.worktree, timeout=1)
    assert done.timed_out
    poll(lambda: not _alive(f"sleep {number}"), 10, "the timed-out jail kept a process")
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    done, _ = run(jail, f"setsid sleep {number} & sleep {number}", jail.worktree, cancel=cancel)
    timer.join()
    assert done.cancelled
    poll(lambda: not _alive(f"sleep {number}"), 10, "the cancelled jail kept a process")


def test_limits_hold_inside(jail: Jail) -> None:
    _done, out = run(jail, "ulimit -u; ulimit -f; head -c 2M /dev/zero > big; echo $?",
                    jail.worktree)
    procs, blocks, code = out.split()[:3]
    assert procs == "64"
    assert int(blocks) * 1024 == 1024 * 1024  # ulimit -f speaks in 1 KiB blocks here
    assert code != "0" and (jail.worktree / "big").stat().st_size <= 1024 * 1024


def test_the_git_dir_is_read_only_inside(home: Path, tmp_path: Path) -> None:
    tree = home / "workspaces" / "g-a1" / "tree"
    git_dir = home / "workspaces" / "g-a1" / "git"
    tree.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--separate-git-dir", str(git_dir), str(tree)],
                   check=True)
    (tree / ".git").unlink()  # the agent's layout: no .git in the work tree on the host
    made = default_sandboxes(home).jail("g-a1", tree, git_dir=git_dir)
    assert made is not None
    config = (git_dir / "config").read_bytes()
    _done, out = run(made, "git status --short >/dev/null && echo readable; "
                          "echo '[core]fsmonitor=touch /tmp/pwned' >> .git/config "
                          "|| echo refused", tree)
    assert "readable" in out and "refused" in out, out
    assert (git_dir / "config").read_bytes() == config


def test_the_bridge_is_the_only_way_out(home: Path, tmp_path: Path) -> None:
    """A jail with a broker socket reaches it at 127.0.0.1:BRIDGE_PORT, and nothing else."""
    sock_dir = Path(tempfile.mkdtemp(prefix="ccc-t-"))
    path = sock_dir / "s"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"broker:" + conn.recv(100))

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    tree = home / "workspaces" / "b-a1" / "tree"
    tree.mkdir(parents=True)
    made = default_sandboxes(home).jail("b-a1", tree, broker_socket=path)
    assert made is not None
    script = (f"exec 3<>/dev/tcp/127.0.0.1/{BRIDGE_PORT}; printf hello >&3; "
              "timeout 5 head -c 12 <&3; echo")
    _done, out = run(made, script, tree)
    thread.join(10)
    server.close()
    assert "broker:hello" in out, out


def test_read_only_paths_may_not_show_the_agent(home: Path) -> None:
    sandboxes = default_sandboxes(home, SandboxConfig(read_only_paths=(home.parent,)))
    with pytest.raises(ConfigError, match="would show the agent's"):
        sandboxes.check()


def test_no_bwrap_means_no_task_code(home: Path, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    with pytest.raises(SandboxUnavailable, match=r"bwrap is not installed.*sandbox: off"):
        default_sandboxes(home).check()
    default_sandboxes(home, SandboxConfig(mode="off")).check()  # the operator's explicit way


def test_protected_paths_name_the_agents_own(home: Path) -> None:
    paths = protected_paths(home, home / "secrets.env")
    assert home in paths and home / "secrets.env" in paths
    assert Path.home() / ".ssh" in paths


def test_the_scratch_runner_seals_its_commands(home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    runner = CommandRunner(home, default_sandboxes(home))
    attack = "! cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -q sk-ant-"
    report = runner.run(held(task("unused", attack, verify=attack)), threading.Event())
    assert report.status == "succeeded", report.reason
    unsealed = CommandRunner(home, Sandboxes(SandboxConfig(mode="off"), home / "s", ()))
    leaked = unsealed.run(held(task("unused", attack)), threading.Event())
    assert leaked.status == "failed"
