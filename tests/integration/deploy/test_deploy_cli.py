"""Rolling batches, --tags, and the real `invoke deploy` command line against the test hosts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import AGENT, ROOT, SECRETS, DeployEnv  # type: ignore[import-not-found]

from cluster.units import layout

pytestmark = pytest.mark.integration
NOWHERE = "ssh://root@172.29.231.254/nowhere.git"  # no such state host: the agent never beats


def _config(env: DeployEnv, name: str) -> dict[str, object]:
    text = env.exec(name, ["cat", str(layout.AGENT_CONFIG)])[1]
    loaded: dict[str, object] = yaml.safe_load(text)
    return loaded


def _pid(env: DeployEnv, name: str) -> int:
    argv = ["systemctl", "show", "-p", "MainPID", "--value", layout.UNIT_NAME]
    return int(env.exec(name, argv)[1].strip() or 0)


def test_batch_1_stops_after_a_failed_batch(converged: DeployEnv) -> None:
    first, *later = converged.names
    before = {name: _config(converged, name) for name in later}
    converged.host_data[first] = {"state_repo": NOWHERE}
    for name in later:
        converged.host_data[name] = {"max_tasks": 2}  # would change, were they attempted
    converged.write_inventory()
    outcomes = converged.deploy(batch=1, verify_timeout=8.0)
    assert outcomes[first].failed and "not verified within" in outcomes[first].reason
    assert {n: outcomes[n].status for n in later} == dict.fromkeys(later, "skipped")
    assert all("batch 1 had a failure" in outcomes[n].reason for n in later)
    assert all(outcomes[n].actions == () for n in later)
    assert {n: _config(converged, n) for n in later} == before  # untouched


def test_tags_config_only_touches_config(converged: DeployEnv) -> None:
    name = converged.names[0]
    pid, release = _pid(converged, name), converged.exec(name, ["readlink", str(layout.CURRENT)])
    converged.host_data[name] = {"max_tasks": 3}
    converged.write_inventory()
    outcomes = converged.deploy(tags=("config",))
    assert outcomes[name].status == "changed"
    assert outcomes[name].actions == (f"write: {layout.AGENT_CONFIG}",)
    assert _config(converged, name)["max_tasks"] == 3
    assert _pid(converged, name) == pid  # no restart: service is another tag
    assert converged.exec(name, ["readlink", str(layout.CURRENT)]) == release
    assert {h: o.status for h, o in outcomes.items() if h != name} == {
        h: "ok" for h in converged.names if h != name
    }


def _invoke(env: DeployEnv, *args: str) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/invoke deploy` as an operator runs it; settings from CLUSTER_DEPLOY_*."""
    state = env.state
    environ = {
        **os.environ,
        **SECRETS,
        "CLUSTER_DEPLOY_ROOT": str(env.source),
        "CLUSTER_DEPLOY_WORK_DIR": str(env.work),
        "CLUSTER_DEPLOY_STATE_SSH_KEY": str(state.deploy_key),
        "CLUSTER_DEPLOY_STATE_KNOWN_HOSTS": str(state.agents_known_hosts),
        "CLUSTER_DEPLOY_STATE_URL": state.control_url,
        "CLUSTER_DEPLOY_STATE_SSH_COMMAND": state.control_ssh_command,
        "CLUSTER_DEPLOY_AGENT": json.dumps(AGENT),
        "CLUSTER_DEPLOY_VERIFY_TIMEOUT": "60",
        "COLUMNS": "200",
    }
    argv = [str(ROOT / ".venv" / "bin" / "invoke"), "deploy", "--inventory", str(env.inventory),
            *args]  # fmt: skip
    return subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


def test_invoke_deploy_command_line_exits_0_and_prints_the_summary(converged: DeployEnv) -> None:
    done = _invoke(converged)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in converged.names:
        assert name in done.stdout
    assert "deploy" in done.stdout and "result" in done.stdout
    assert "0 changed, 3 ok, 0 failed" in done.stdout
    for secret in SECRETS.values():
        assert secret not in done.stdout + done.stderr


def test_invoke_deploy_exits_1_when_a_host_fails(converged: DeployEnv, tmp_path: Path) -> None:
    name = converged.names[0]
    converged.host_data[name] = {"min_cpus": 512}  # preflight refuses it, changing nothing
    converged.write_inventory()
    done = _invoke(converged, "--limit", name)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "preflight" in done.stdout and "min_cpus" in done.stdout
    assert "0 changed, 0 ok, 1 failed" in done.stdout
    assert f"deploy failed on 1 host(s): {name}" in done.stderr
