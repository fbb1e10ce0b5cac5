"""Deploy on real hosts when things go wrong, config changes, rollback, and real work done."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from conftest import DeployEnv, command_task_result  # type: ignore[import-not-found]

from cluster.deploy.lock import DeployLocked, deploy_lock
from cluster.deploy.outcome import HostOutcome
from cluster.state.checker import check
from cluster.state.gitcmd import run_git
from cluster.testhosts.faults import (
    regenerate_host_key,
    start_host,
    stop_host,
    trust_current_host_key,
)
from cluster.units import layout

pytestmark = pytest.mark.integration


def _failed(outcomes: dict[str, HostOutcome]) -> dict[str, str]:
    return {h: o.reason for h, o in outcomes.items() if o.failed}


def _pid(env: DeployEnv, name: str) -> int:
    argv = ["systemctl", "show", "-p", "MainPID", "--value", layout.UNIT_NAME]
    return int(env.exec(name, argv)[1].strip() or 0)


def _current(env: DeployEnv, name: str) -> str:
    link: str = env.exec(name, ["readlink", str(layout.CURRENT)])[1]
    return link.strip().rsplit("/", 1)[-1]


def test_a_changed_config_restarts_only_the_affected_host(converged: DeployEnv):
    first, *others = converged.names
    before = {name: _pid(converged, name) for name in converged.names}
    converged.host_data[first] = {"max_tasks": 2}
    converged.write_inventory()
    outcomes = converged.deploy()
    assert outcomes[first].status == "changed"
    assert any(a.startswith("restart") for a in outcomes[first].actions), outcomes[first].actions
    assert {n: outcomes[n].status for n in others} == dict.fromkeys(others, "ok")
    assert _pid(converged, first) != before[first]
    assert {n: _pid(converged, n) for n in others} == {n: before[n] for n in others}
    _, text, _ = converged.exec(first, ["cat", str(layout.AGENT_CONFIG)])
    assert yaml.safe_load(text)["max_tasks"] == 2


def test_unreachable_host_and_changed_host_key_fail_cleanly(converged: DeployEnv):
    ok, changed_key, gone = converged.names
    converged.host_data[ok] = {"max_tasks": 3}  # so the healthy host really deploys
    converged.write_inventory()
    regenerate_host_key(changed_key)
    stop_host(gone)
    try:
        outcomes = converged.deploy()
    finally:
        start_host(gone)
        trust_current_host_key(changed_key, converged.hosts.paths.known_hosts)
    assert outcomes[ok].status == "changed", outcomes[ok]
    assert outcomes[changed_key].failed and "host key changed" in outcomes[changed_key].reason
    assert outcomes[gone].failed
    assert any(w in outcomes[gone].reason for w in ("refused", "timed out", "closed")), outcomes[
        gone
    ]
    assert outcomes[changed_key].actions == outcomes[gone].actions == ()


def test_an_agent_that_does_not_come_up_is_rolled_back(converged: DeployEnv):
    name = converged.names[0]
    _, config_before, _ = converged.exec(name, ["cat", str(layout.AGENT_CONFIG)])
    broken = {"state": "ssh://root@172.29.231.254/nowhere.git"}  # no such state host
    outcomes = converged.deploy(limit=(name,), agent=broken, verify_timeout=8.0)
    assert set(outcomes) == {name}
    assert outcomes[name].failed and "not verified within" in outcomes[name].reason
    assert outcomes[name].rolled_back.startswith("release")
    assert converged.exec(name, ["cat", str(layout.AGENT_CONFIG)])[1] == config_before
    assert converged.deploy()[name].status == "ok"  # back where it was, and running


def test_rollback_returns_to_the_previous_release(converged: DeployEnv):
    old = {name: _current(converged, name) for name in converged.names}
    marker = converged.source / "cluster" / "__init__.py"
    marker.write_text(marker.read_text() + f"# release marker {time.time()}\n")
    outcomes = converged.deploy()
    assert not _failed(outcomes), _failed(outcomes)
    new = {name: _current(converged, name) for name in converged.names}
    assert all(new[n] != old[n] for n in converged.names)
    for outcome in outcomes.values():  # only the project's own wheel changed
        assert "push wheels: claude_code_cluster-0.1.0-py3-none-any.whl" in outcome.actions

    back = converged.rollback(limit=(converged.names[0],))
    assert set(back) == {converged.names[0]} and back[converged.names[0]].status == "changed"
    assert _current(converged, converged.names[0]) == old[converged.names[0]]
    back = converged.rollback()
    assert not _failed(back), _failed(back)
    assert _current(converged, converged.names[0]) == new[converged.names[0]]  # swapped back
    assert {n: _current(converged, n) for n in converged.names[1:]} == {
        n: old[n] for n in converged.names[1:]
    }
    again = converged.deploy()  # forward again: installed already, so no push and no install
    assert again[converged.names[0]].status == "ok"
    for name in converged.names[1:]:
        assert again[name].actions[0].startswith("switch"), again[name].actions


def test_a_deployed_agent_completes_a_command_task(
    converged: DeployEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GIT_SSH_COMMAND", converged.state.control_ssh_command)
    result = command_task_result(converged.state, tmp_path, "deploy-cmd-1", "backend")
    assert result.status == "succeeded", result
    assert result.agent in converged.names
    mirror = tmp_path / "mirror.git"
    run_git(["clone", "--quiet", "--mirror", converged.state.control_url, str(mirror)])
    report = check(mirror)  # the whole history, not only this task's result
    assert report.problems() == {}, report.problems()
    assert report.tasks["deploy-cmd-1"] == ("done", "succeeded")


def test_a_second_deploy_waits_for_no_one_the_lock_names_its_holder(deploy_env: DeployEnv):
    settings = deploy_env.settings()
    with deploy_lock(settings.lock_file, "deploy"), pytest.raises(DeployLocked) as caught:
        deploy_env.deploy()
    assert "deploy holds the lock: pid" in str(caught.value)
