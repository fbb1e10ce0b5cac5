"""invoke deploy on real systemd hosts: first deploy, no-op re-deploy, check mode, verification.

The tests share one set of hosts; each starts from a converged fleet (the ``converged``
fixture deploys, a no-op once the fleet is converged). ``first_deploy`` is the session's first.
"""

from __future__ import annotations

import pytest
from conftest import SECRETS, DeployEnv  # type: ignore[import-not-found]

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.outcome import HostOutcome
from cluster.units import layout

pytestmark = pytest.mark.integration


def _failed(outcomes: dict[str, HostOutcome]) -> dict[str, str]:
    return {h: o.reason for h, o in outcomes.items() if o.failed}


def test_first_deploy_converges_every_host_and_verifies_heartbeats(
    deploy_env: DeployEnv, first_deploy: dict[str, HostOutcome]
):
    outcomes = first_deploy
    assert not _failed(outcomes), _failed(outcomes)
    assert {o.status for o in outcomes.values()} == {"changed"}
    for name in deploy_env.names:
        actions = " | ".join(outcomes[name].actions)
        for step in ("prepare", "push wheels", "install", "switch", "write", "enable", "restart"):
            assert step in actions, (name, actions)
        code, out, _ = deploy_env.exec(name, ["systemctl", "is-active", layout.UNIT_NAME])
        assert out.strip() == "active", (name, code, out)
    reader = HeartbeatReader(deploy_env.state.control_url, deploy_env.work / "t-mirror.git",
                             deploy_env.state.control_ssh_command)  # fmt: skip
    for name in deploy_env.names:
        beat = reader.beat(name)
        assert beat is not None and beat.state == "running", (name, beat)
        _, pid, _ = deploy_env.exec(name, ["systemctl", "show", "-p", "MainPID", "--value",
                                           layout.UNIT_NAME])  # fmt: skip
        assert beat.pid == int(pid), (name, beat, pid)


RELEASE_PROBE = """
import importlib.metadata as md, anthropic, github, cluster.agent.executors.claude as claude
anthropic.Anthropic(api_key="unused", base_url="http://127.0.0.1:9")
print(type(anthropic.__loader__).__name__, anthropic.__file__.endswith(".pyc"),
      md.version("anthropic") == anthropic.__version__, type(claude.__loader__).__name__)
"""


def test_the_release_imports_pure_wheels_in_place_as_the_service_user(converged: DeployEnv):
    name = converged.names[0]
    python = str(layout.CURRENT / "venv" / "bin" / "python")
    argv = ["runuser", "-u", layout.SERVICE_USER, "--", python, "-c", RELEASE_PROBE]
    code, out, err = converged.exec(name, argv)
    assert (code, out.split()) == (0, ["zipimporter", "True", "True", "SourceFileLoader"]), err
    _, count, _ = converged.exec(name, ["sh", "-c", f"find {layout.CURRENT}/ -type f | wc -l"])
    assert int(count) < 3000, count  # unpacked, the release was ~8,700 files

    name = converged.names[0]
    for path in (layout.SECRETS_ENV, layout.SSH_DIR / "id_ed25519"):
        _, out, _ = converged.exec(name, ["stat", "-c", "%a %U %G", str(path)])
        assert out.split() == ["600", layout.SERVICE_USER, layout.SERVICE_USER], (path, out)
    _, env, _ = converged.exec(name, ["cat", str(layout.SECRETS_ENV)])
    assert sorted(line for line in env.splitlines() if not line.startswith("#")) == sorted(
        f"{key}={value}" for key, value in SECRETS.items()
    )
    _, shell, _ = converged.exec(name, ["getent", "passwd", layout.SERVICE_USER])
    assert shell.strip().endswith(":/var/lib/claude-cluster:/usr/sbin/nologin")


def test_second_deploy_reports_zero_changed(converged: DeployEnv):
    outcomes = converged.deploy()
    assert {h: (o.status, o.actions) for h, o in outcomes.items()} == {
        h: ("ok", ()) for h in converged.names
    }


def test_check_mode_lists_changes_and_changes_nothing(converged: DeployEnv):
    name = converged.names[1]
    snapshot = _snapshot(converged, name)
    converged.exec(name, ["sh", "-c", f"echo '# local edit' >> {layout.AGENT_CONFIG}"])
    converged.exec(name, ["chmod", "644", str(layout.SECRETS_ENV)])
    edited = _snapshot(converged, name)
    outcomes = converged.deploy(check=True, diff=True)
    assert outcomes[name].status == "changed"
    assert any("write" in a and str(layout.AGENT_CONFIG) in a for a in outcomes[name].actions)
    assert any("restart" in a for a in outcomes[name].actions)
    diff_text = "\n".join(outcomes[name].diffs)
    assert "-# local edit" in diff_text
    for secret in SECRETS.values():
        assert secret not in diff_text
    assert "ANTHROPIC_API_KEY=***" in diff_text
    assert {h: o.status for h, o in outcomes.items() if h != name} == {
        h: "ok" for h in converged.names if h != name
    }
    assert _snapshot(converged, name) == edited != snapshot  # check mode changed nothing
    outcomes = converged.deploy()  # converge again: only that host changes
    assert outcomes[name].status == "changed"
    assert _snapshot(converged, name, pid=False) == _drop_pid(snapshot)  # restarted: a new pid


def _snapshot(env: DeployEnv, name: str, pid: bool = True) -> str:
    argv = [
        "sh",
        "-c",
        f"stat -c '%a %U %n' {layout.ETC}/*; sha256sum {layout.ETC}/*; "
        f"readlink {layout.CURRENT}; systemctl show -p MainPID --value {layout.UNIT_NAME}",
    ]
    out = env.exec(name, argv)[1]
    return out if pid else _drop_pid(out)


def _drop_pid(snapshot: str) -> str:
    return "\n".join(snapshot.strip().splitlines()[:-1])
