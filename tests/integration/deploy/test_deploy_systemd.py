"""invoke deploy on real systemd hosts: first deploy, no-op re-deploy, check mode, verification.

The tests share one set of hosts; each starts from a converged fleet (the ``converged``
fixture deploys, a no-op once the fleet is converged). ``first_deploy`` is the session's first.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from conftest import (  # type: ignore[import-not-found]
    ROOT,
    SECRETS,
    DeployEnv,
    assert_sealed,
    sandbox_argv,
)

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.outcome import HostOutcome
from cluster.transport import docker
from cluster.units import layout
from cluster.units.systemd import quote_argv

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
    reader = HeartbeatReader(deploy_env.state.control_url, deploy_env.work / "t-reader",
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
    user = layout.SERVICE_USER
    for path, owned in ((layout.SECRETS_ENV, "600 root root"), (layout.SSH_DIR, f"750 root {user}"),
                        (layout.SSH_DIR / "id_ed25519", f"640 root {user}"),
                        (layout.SSH_DIR / "known_hosts", "644 root root")):  # fmt: skip
        _, out, _ = converged.exec(name, ["stat", "-c", "%a %U %G", str(path)])
        assert out.split() == owned.split(), (path, out)
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


# Settings of the agent's unit a one-shot run of another command does without.
NOT_COPIED = ("Type", "ExecStart", "Restart", "RestartSec", "KillMode", "KillSignal",
              "TimeoutStopSec")  # fmt: skip
PROBE_UNIT = "ccc-under-agent-unit.service"
PROBE_OUT = "/run/ccc-under-agent-unit.out"


def _under_the_agents_unit(env: DeployEnv, host: str, argv: list[str]) -> tuple[str, str]:
    """Run ``argv`` once with every [Service] setting of the deployed agent unit (user,
    hardening, credentials); (its Result, what it printed). ``systemctl start`` of a oneshot
    returns when it is done: nothing to poll."""
    _, unit, _ = env.exec(host, ["cat", str(layout.UNIT_PATH)])
    service = unit.split("[Service]\n", 1)[1].split("\n[", 1)[0].splitlines()
    kept = [line for line in service if line.split("=", 1)[0] not in NOT_COPIED]
    lines = ["[Service]", "Type=oneshot", *kept, f"ExecStart={quote_argv(argv)}",
             f"StandardOutput=truncate:{PROBE_OUT}", "StandardError=inherit", ""]  # fmt: skip
    text = "\n".join(lines)
    container = docker.get(docker.client(), host)
    docker.put_file(container, "/etc/systemd/system", PROBE_UNIT, text.encode(), 0o644)
    try:
        env.exec(host, ["systemctl", "daemon-reload"])
        env.exec(host, ["systemctl", "start", PROBE_UNIT])
        _, result, _ = env.exec(host, ["systemctl", "show", "-p", "Result", "--value", PROBE_UNIT])
        _, out, _ = env.exec(host, ["cat", PROBE_OUT])
        return result.strip(), out
    finally:
        env.exec(host, ["rm", "-f", f"/etc/systemd/system/{PROBE_UNIT}", PROBE_OUT])
        env.exec(host, ["systemctl", "daemon-reload"])


def test_secrets_are_roots_and_never_in_the_agents_environment(converged: DeployEnv):
    name, user = converged.names[0], layout.SERVICE_USER
    as_user = ["runuser", "-u", user, "--"]
    code, _, err = converged.exec(name, [*as_user, "cat", str(layout.SECRETS_ENV)])
    assert code != 0 and "Permission denied" in err, (code, err)
    for path in ("id_ed25519", "known_hosts", "config"):  # config: none yet, none may be made
        code, _, err = converged.exec(name, [*as_user, "sh", "-c", f": >> {layout.SSH_DIR}/{path}"])
        assert code != 0 and "Permission denied" in err, (path, code, err)
    _, pid, _ = converged.exec(name, ["systemctl", "show", "-p", "MainPID", "--value",
                                      layout.UNIT_NAME])  # fmt: skip
    _, environ, _ = converged.exec(name, ["cat", f"/proc/{int(pid)}/environ"])
    # the agent's own environment was read
    assert "HOME=" in environ, (pid, environ, converged.unit_state(name))
    for key, value in SECRETS.items():
        assert key not in environ and value not in environ, key
    # ... yet the agent has them: systemd's credential, read the way the agent reads secrets.
    python = str(layout.CURRENT / "venv" / "bin" / "python")
    lookup = ("import hashlib; from cluster.secrets_file import require; "
              "print(*(hashlib.sha256(require(n, None).reveal().encode()).hexdigest()[:16] "
              "for n in ('ANTHROPIC_API_KEY', 'GITHUB_TOKEN')))")  # fmt: skip
    result, out = _under_the_agents_unit(converged, name, [python, "-c", lookup])
    assert result == "success" and out.split() == [
        hashlib.sha256(SECRETS[n].encode()).hexdigest()[:16]
        for n in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN")
    ], (result, out)
    # Inside the unit the ssh directory cannot even be moved aside and replaced.
    move = f"mv {layout.SSH_DIR} {layout.STATE_DIR}/moved 2>&1; echo moved=$?"
    result, out = _under_the_agents_unit(converged, name, ["/bin/sh", "-c", move])
    assert result == "success" and "moved=1" in out, out


def test_the_sandbox_runs_under_the_agents_hardened_unit(converged: DeployEnv):
    name = converged.names[0]
    result, out = _under_the_agents_unit(converged, name, sandbox_argv(str(layout.WORKSPACE)))
    assert result == "success", out
    assert_sealed(out)
    check = [str(layout.EXECUTABLE), "sandbox", "check", "--config", str(layout.AGENT_CONFIG),
             "--workdir", str(layout.WORKSPACE)]  # fmt: skip
    result, out = _under_the_agents_unit(converged, name, check)
    assert result == "success" and "sandbox: sealed" in out, out


def test_the_agents_unit_is_exposed_no_more_than_docs_say(converged: DeployEnv):
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    documented = float(re.findall(r"`systemd-analyze security` rates the unit (\d+\.\d+)", text)[0])
    assert documented <= 3.0  # issue 12's aim
    analyze = ["systemd-analyze", "security", "--no-pager", layout.UNIT_NAME]
    code, out, err = converged.exec(converged.names[0], analyze)
    found = re.findall(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert found, (code, out[-500:], err)
    assert float(found[0]) <= documented, (found, documented)
