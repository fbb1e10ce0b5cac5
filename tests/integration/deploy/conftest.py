"""Fixtures for deploy tests: three real agent hosts and a state host, all named ccc-deploy*."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from cluster.deploy.outcome import HostOutcome
from cluster.deploy.run import run
from cluster.deploy.settings import DeploySettings
from cluster.state.records import Result
from cluster.state.submit import submit
from cluster.testhosts import bed as testbed
from cluster.testhosts.bed import SECRETS, freeze_source, testbed_settings
from cluster.testhosts.hosts import down, up
from cluster.testhosts.model import HostSet
from cluster.testhosts.statehost import StateHost, start_state_host
from cluster.transport import docker
from cluster.units import layout
from tests.clients import state_client
from tests.helpers import poll

ROOT = Path(__file__).resolve().parents[3]
# Not ccc-it (tests/integration/conftest.py) nor invoke's ccc-host; CCC_DEPLOY_PREFIX lets two
# sessions on one machine each have a fleet of their own.
PREFIX = os.environ.get("CCC_DEPLOY_PREFIX", "ccc-deploy")
COUNT = 3
# Configured for Claude and GitHub, so deploy writes both secrets (a host gets only those its
# agent uses); the scratch runner runs command tasks and never builds the executor or forge.
AGENT = {**testbed.AGENT, "executors": ["command", "claude"], "forge": "github"}


# The sandbox an attempt runs in, as bubblewrap's command line (what cluster/sandbox/ builds,
# less the agent's own paths): its own user, PID, network and mount namespaces; prints the
# names of the processes it sees, its uid and whether its loopback is up.
SANDBOX_PROBE = ("echo comm1=$(cat /proc/1/comm) pids=$(ls -d /proc/[0-9]* | wc -l); id -u; "
                 "grep -c lo: /proc/net/dev")  # fmt: skip


def sandbox_argv(worktree: str) -> list[str]:
    return ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "1000", "--gid", "1000", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink",
            "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin", "--ro-bind-try",
            "/etc/alternatives", "/etc/alternatives", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--bind", worktree, worktree, "--chdir", worktree, "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--", "prlimit", "--nproc=512", "--nofile=1024",
            "--", "sh", "-c", SANDBOX_PROBE]  # fmt: skip


def assert_sealed(output: str) -> None:
    """What :data:`SANDBOX_PROBE` printed comes from inside a sandbox."""
    lines = output.split()
    assert lines[:1] == ["comm1=bwrap"], output  # PID 1 of its own namespace: not the host's
    assert lines[1].startswith("pids=") and int(lines[1][5:]) < 10, output  # none of the host's
    assert lines[2:4] == ["1000", "1"], output  # uid 1000 in its user namespace; lo is there


@dataclass
class DeployEnv:
    hosts: HostSet
    state: StateHost
    inventory: Path
    work: Path
    host_data: dict[str, dict[str, Any]]
    source: Path  # a frozen copy of the project: others' edits must not make new releases

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts.hosts]

    def write_inventory(self) -> None:
        write_inventory(self)

    def settings(self, **overrides: Any) -> DeploySettings:
        overrides.setdefault("agent", AGENT)
        return testbed_settings(self.source, self.inventory, self.work, self.state, **overrides)

    def deploy(self, **overrides: Any) -> dict[str, HostOutcome]:
        console = Console(width=160, force_terminal=False)
        outcomes = run(self.settings(**overrides), console, environ=SECRETS)
        return {o.host: o for o in outcomes}

    def rollback(self, **overrides: Any) -> dict[str, HostOutcome]:
        console = Console(width=160, force_terminal=False)
        outcomes = run(self.settings(**overrides), console, rollback=True, environ=SECRETS)
        return {o.host: o for o in outcomes}

    def exec(self, host: str, argv: list[str]) -> tuple[int, str, str]:
        """Look inside a host over docker exec (the trusted channel), not over the deploy's SSH."""
        return docker.exec_argv(docker.get(docker.client(), host), argv)

    def unit_state(self, host: str) -> str:
        """What systemd says of the agent's unit on ``host`` and its journal's tail: for a
        failure message."""
        _, status, _ = self.exec(host, ["systemctl", "status", "--no-pager", "-n", "0",
                                        layout.UNIT_NAME])  # fmt: skip
        _, journal, _ = self.exec(host, ["journalctl", "--no-pager", "-n", "40", "-u",
                                         layout.UNIT_NAME])  # fmt: skip
        return f"{status}\n{journal}"


def command_task_result(state: StateHost, work: Path, task_id: str, specialty: str) -> Result:
    """Submit an `echo hi` command task to the state repo; its result, within 90 s.

    The caller points GIT_SSH_COMMAND at the state host (``state.control_ssh_command``).
    """
    task = {"id": task_id, "title": f"say hello ({task_id})", "specialty": specialty,
            "repo": "demo/sample", "executor": {"kind": "command", "command": "echo hi"},
            "verify": "true"}  # fmt: skip
    path = work / f"{task_id}.yaml"
    path.write_text(yaml.safe_dump(task))
    with state_client(state.control_url, work, "tester", work="client") as client:
        submit(client, [path])
        result: Result = poll(lambda: client.snapshot().result(task_id), 90,
                              f"a result for {task_id}", interval=0.5)
    return result


def write_inventory(env: DeployEnv) -> None:
    testbed.write_inventory(env.inventory, env.hosts, env.state, env.host_data)


@contextmanager
def fresh_env(base: Path, prefix: str, count: int) -> Iterator[DeployEnv]:
    """``count`` fresh agent hosts named ``prefix-N`` and a state host ``prefix-state-1``, with
    their inventory written and a frozen copy of the project; all removed afterwards."""
    try:
        state = start_state_host(base / "state", prefix=f"{prefix}-state")
        hosts = up(count, prefix, base / "hosts", say=lambda _: None)
        source = freeze_source(ROOT, base / "source")
        env = DeployEnv(hosts, state, base / "inventory", base / "work", {}, source)
        write_inventory(env)
        yield env
    finally:
        down(prefix)
        down(f"{prefix}-state")


@pytest.fixture(scope="session")
def deploy_env(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployEnv]:
    """Three fresh agent hosts and a state host for the deploy tests; removed at the end."""
    with fresh_env(tmp_path_factory.mktemp("deploy"), PREFIX, COUNT) as env:
        yield env


@pytest.fixture(scope="session")
def first_deploy(deploy_env: DeployEnv) -> dict[str, HostOutcome]:
    """The outcomes of the session's first deploy, onto fresh hosts (whichever test asks first)."""
    return deploy_env.deploy()


@pytest.fixture
def converged(deploy_env: DeployEnv, first_deploy: dict[str, HostOutcome]) -> DeployEnv:
    """A fleet at the inventory's wanted state (a no-op deploy when it already is)."""
    deploy_env.host_data.clear()
    deploy_env.write_inventory()
    outcomes = deploy_env.deploy()
    failed = {h: o.reason for h, o in outcomes.items() if o.failed}
    assert not failed, failed
    return deploy_env
