"""The fault primitives on one test host: signal its agent, cut it off from the state host.

Signals go over ``docker exec`` (the trusted channel). A cut is a blackhole route to the
state host's address inside the host's network namespace, entered with ``nsenter`` from this
machine: the container has no NET_ADMIN and ``docker exec --privileged`` is refused here,
while its sshd (reached through the docker gateway) stays up and so does its published port.
"""

from __future__ import annotations

import subprocess

from cluster.errors import HostError
from cluster.transport import docker
from cluster.units import layout

AGENT_PATTERN = "claude-cluster agent run"
NSENTER_TIMEOUT = 10.0


def _exec(host: str, argv: list[str]) -> tuple[int, str, str]:
    return docker.exec_argv(docker.get(docker.client(), host), argv)


def agent_pid(host: str) -> int:
    """The agent service's main pid (0 when it is not running)."""
    _, out, _ = _exec(host, ["systemctl", "show", "-p", "MainPID", "--value", layout.UNIT_NAME])
    return int(out.strip() or 0)


def kill_agent(host: str) -> str:
    """SIGKILL every agent process on the host; systemd restarts the unit (on-failure)."""
    code, out, err = _exec(host, ["pkill", "-KILL", "-f", AGENT_PATTERN])
    if code not in (0, 1):  # 1: no process matched (the agent was restarting)
        raise HostError(host, f"pkill failed (exit {code}): {(err or out).strip()}")
    return "killed" if code == 0 else "no agent process"


def signal_pid(host: str, pid: int, signal: str) -> None:
    code, out, err = _exec(host, ["kill", f"-{signal}", str(pid)])
    if code != 0:
        raise HostError(host, f"kill -{signal} {pid} failed: {(err or out).strip()}")


def _netns(host: str, argv: list[str]) -> None:
    container = docker.get(docker.client(), host)
    container.reload()
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if pid <= 0:
        raise HostError(host, "is not running: no network namespace to enter")
    done = subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True,
                          text=True, timeout=NSENTER_TIMEOUT, check=False)  # fmt: skip
    if done.returncode != 0:
        raise HostError(host, f"{' '.join(argv)} failed: {done.stderr.strip()}")


def cut(host: str, address: str) -> None:
    """Drop every packet from ``host`` to ``address`` (the state host) until ``heal``."""
    _netns(host, ["ip", "route", "replace", "blackhole", f"{address}/32"])


def heal(host: str, address: str) -> None:
    _netns(host, ["ip", "route", "del", "blackhole", f"{address}/32"])
