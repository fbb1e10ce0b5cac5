"""restart, logs and remove-agent through `invoke` on real hosts: one host, its logs, its claims."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from conftest import ROOT, OpsEnv  # type: ignore[import-not-found]

from cluster.inventory import load_inventory
from cluster.inventory.edit import add_host, remove_host
from cluster.ops.addagent import NewAgent, add_agent
from cluster.ops.remove import remove_agent
from cluster.state.checker import check
from cluster.state.client import StateClient
from cluster.state.gitcmd import git_env
from cluster.state.records import Claim, Heartbeat, Release, Result
from cluster.state.submit import submit
from cluster.testhosts.bed import SECRETS
from cluster.units import layout
from tests import helpers
from tests.clients import state_client

pytestmark = pytest.mark.integration

INVOKE = ROOT / ".venv" / "bin" / "invoke"
POLL = 0.5
GRACE = 3.0  # the added agent cancels a task this long after SIGTERM: sleep 30 outlasts it
T = TypeVar("T")


def poll(what: str, probe: Callable[[], tuple[T | None, str]], timeout: float = 120.0) -> T:
    """``probe`` returns (value or None, what was seen): ``tests.helpers.poll`` for a record,
    failing with the last sighting at the deadline."""
    seen = "nothing yet"

    def value() -> T | None:
        nonlocal seen
        found, seen = probe()
        return found

    found: T = helpers.poll(value, timeout, lambda: f"{what} (last seen: {seen})", POLL)
    return found


def invoke(env: OpsEnv, *argv: str) -> subprocess.CompletedProcess[str]:
    """``invoke <task> ...`` as an operator runs it, reading the state repo from 127.0.0.1."""
    environ = {
        **os.environ, **SECRETS, "COLUMNS": "300",
        "CLUSTER_DEPLOY_WORK_DIR": str(env.work),
        "CLUSTER_DEPLOY_STATE_URL": env.state.control_url,
        "CLUSTER_DEPLOY_STATE_SSH_COMMAND": env.state.control_ssh_command,
    }  # fmt: skip
    return subprocess.run([str(INVOKE), *argv, "--inventory", str(env.inventory)], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


def said(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def unit_pid(env: OpsEnv, host: str) -> int:
    code, out, err = env.exec(host, ["systemctl", "show", "-p", "MainPID", "--value",
                                     layout.UNIT_NAME])  # fmt: skip
    assert code == 0, err
    return int(out.strip())


def write_task(directory: Path, key: str, command: str) -> Path:
    path = directory / f"{key}.yaml"
    path.write_text(f"id: {key}\ntitle: day two {key}\nspecialty: backend\nrepo: o/r\n"
                    f"executor: {{kind: command, command: '{command}'}}\n")  # fmt: skip
    return path


def result_seen(person: StateClient, key: str) -> tuple[Result | None, str]:
    """``key``'s result if it has one, and its claim's record, for ``poll``."""
    snap = person.snapshot()
    view = snap.claims.get(key)
    return snap.result(key), repr(view.record if view else None)


@pytest.fixture(scope="module")
def fleet(deployed: OpsEnv) -> Iterator[OpsEnv]:
    """The first host plus the third (short stop grace), added with add-agent; gone afterwards."""
    env = deployed
    third = env.hosts.hosts[2]
    if third.name not in load_inventory(env.inventory).names:
        agent = {**env.settings().agent, "stop_grace_seconds": GRACE}
        settings = env.settings().model_copy(update={"agent": agent})
        outcome = add_agent(settings, NewAgent("127.0.0.1", "backend", third.name,
                                                     port=third.port, user="root"),
                            environ=SECRETS)  # fmt: skip
        assert not outcome.deploy.failed, outcome.deploy.reason
    yield env
    env.exec(env.names[0], ["systemctl", "start", layout.UNIT_NAME])
    if third.name in load_inventory(env.inventory).names:  # a test failed before removing it
        remove_agent(env.inventory, third.name, force=True)


@pytest.fixture
def person(
    ops_env: OpsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StateClient]:
    """An operator's client of the state repo, reached from 127.0.0.1."""
    monkeypatch.setenv("GIT_SSH_COMMAND", ops_env.state.control_ssh_command)
    client = state_client(ops_env.state.control_url, tmp_path, "operator", work="person")
    yield client
    client.close()


def test_restart_limit_restarts_only_that_host_and_it_comes_back(
    fleet: OpsEnv, person: StateClient
):
    env = fleet
    target, other = env.names[2], env.names[0]
    before = {name: unit_pid(env, name) for name in (target, other)}
    assert all(before.values()), before

    done = invoke(env, "restart", "--limit", target)

    assert done.returncode == 0, said(done)
    assert f"{target}: ok" in done.stdout, said(done)
    assert other not in done.stdout, said(done)
    after = {name: unit_pid(env, name) for name in (target, other)}
    assert after[target] not in (0, before[target]), (before, after)
    assert after[other] == before[other], (before, after)

    def beat(newer_than: float) -> tuple[Heartbeat | None, str]:
        seen = person.snapshot().agents.get(target)
        ok = (seen is not None and seen.pid == after[target] and seen.state == "running"
              and seen.last_seen > newer_than)  # fmt: skip
        return (seen if ok else None), repr(seen)

    first = poll(f"a heartbeat from {target}'s new pid {after[target]}", lambda: beat(0.0))
    poll(f"a later heartbeat from {target}", lambda: beat(first.last_seen), timeout=60.0)
    assert person.snapshot().agents[other].pid == before[other]


def test_logs_show_the_journal_and_a_task_attempt_log(
    fleet: OpsEnv, person: StateClient, tmp_path: Path
):
    env = fleet
    name = env.names[2]
    journal = invoke(env, "logs", name)
    assert journal.returncode == 0, said(journal)
    assert f"agent={name} task=- started" in journal.stdout, said(journal)

    key = "ops-logs-1"
    submit(person, [write_task(tmp_path, key, "echo ops-logs-marker-$((6 * 7))")])
    result = poll(f"a result of {key}", lambda: result_seen(person, key))
    assert result.status == "succeeded", result

    attempt = invoke(env, "logs", result.agent, "--task", key)

    assert attempt.returncode == 0, said(attempt)
    assert f"{key}-a{result.attempt}.log" in attempt.stdout, said(attempt)  # tail -v's header
    assert "ops-logs-marker-42" in attempt.stdout, said(attempt)


def test_unreachable_host_is_refused_without_force(ops_env: OpsEnv):
    env = ops_env
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    add_host(env.inventory, "ccc-ops-gone", {"hostname": "127.0.0.1", "port": port,
                                             "username": "root"})  # fmt: skip
    try:
        before = (env.inventory / "hosts.yaml").read_bytes()

        done = invoke(env, "remove-agent", "ccc-ops-gone")

        assert done.returncode != 0, said(done)
        message = done.stderr
        assert "remove-agent ccc-ops-gone" in message, said(done)
        assert "nothing removed" in message and "--force" in message, said(done)
        assert (env.inventory / "hosts.yaml").read_bytes() == before
    finally:
        remove_host(env.inventory, "ccc-ops-gone")


def test_remove_agent_stops_it_releases_its_task_and_keeps_other_comments(
    fleet: OpsEnv, person: StateClient, tmp_path: Path
):
    env = fleet
    first, gone = env.names[0], env.names[2]
    hosts_file = env.inventory / "hosts.yaml"
    _comment(hosts_file, first)
    key = "ops-held-1"
    env.exec(first, ["systemctl", "stop", layout.UNIT_NAME])  # only the one to remove claims
    try:
        submit(person, [write_task(tmp_path, key, "sleep 30")])

        def claimed() -> tuple[Claim | None, str]:
            view = person.snapshot().claims.get(key)
            record = view.record if view else None
            held = isinstance(record, Claim) and record.agent == gone
            return (record if held and isinstance(record, Claim) else None), repr(record)

        poll(f"{gone} claiming {key}", claimed)
    finally:
        env.exec(first, ["systemctl", "start", layout.UNIT_NAME])
    kept = {n: e for n, e in yaml.safe_load(hosts_file.read_text()).items() if n != gone}

    done = invoke(env, "remove-agent", gone)

    assert done.returncode == 0, said(done)
    assert f"removed {gone} from the inventory" in done.stdout, said(done)
    assert env.exec(gone, ["systemctl", "is-active", layout.UNIT_NAME])[1].strip() == "inactive"
    assert env.exec(gone, ["systemctl", "is-enabled", layout.UNIT_NAME])[1].strip() == "disabled"
    text = hosts_file.read_text()
    assert yaml.safe_load(text) == kept
    assert "# the first agent: this comment stays" in text
    assert "# loopback, this one too" in text

    result = poll(f"a result of {key} after {gone} left", lambda: result_seen(person, key),
                  timeout=180.0)  # fmt: skip
    assert result.status == "succeeded" and result.agent == first, result
    report = check(_mirror(env, tmp_path / "mirror.git"))
    assert report.tasks[key] == ("done", "succeeded"), report.tasks[key]
    records = list(report.histories[key].records.values())
    released = [r for r in records if isinstance(r, Release) and r.agent == gone]
    assert [r.counted for r in released] == [False], records  # SIGTERM: the attempt not burnt
    assert [r.agent for r in records if isinstance(r, Claim)].count(first) == 1, records
    assert [(r.agent, r.attempt) for r in records if isinstance(r, Result)] == [(first, 1)]


def _comment(hosts_file: Path, name: str) -> None:
    """A comment above ``name``'s entry and one inline in it (a hand-edited hosts.yaml)."""
    lines = hosts_file.read_text().splitlines(keepends=True)
    at = lines.index(f"{name}:\n")
    lines.insert(at, "# the first agent: this comment stays\n")
    hostname = next(i for i in range(at + 1, len(lines)) if "hostname:" in lines[i])
    lines[hostname] = lines[hostname].rstrip("\n") + "  # loopback, this one too\n"
    hosts_file.write_text("".join(lines))


def _mirror(env: OpsEnv, target: Path) -> Path:
    """A mirror clone of the state repo (every claim ref), as the checker reads it."""
    done = subprocess.run(["git", "clone", "-q", "--mirror", env.state.control_url, str(target)],
                          env=git_env({"GIT_SSH_COMMAND": env.state.control_ssh_command}),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target
