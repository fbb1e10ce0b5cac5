"""Rendered units, parsed back into key=value pairs: hardening, paths and secrets masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cluster.agent.config import AgentConfig, load_agent_config
from cluster.errors import ConfigError
from cluster.inventory.model import HostSpec
from cluster.secret import Secret
from cluster.units import seccomp
from cluster.units.agent_yaml import agent_config, render_agent_config
from cluster.units.container import container_spec, docker_run_kwargs
from cluster.units.secrets_env import render_secrets_env
from cluster.units.systemd import quote_argv, render_unit, unit_spec

HOST = HostSpec(
    name="agent-1",
    hostname="192.0.2.10",
    username="deploy",
    specialties=("backend", "docs"),
    max_tasks=3,
    state_repo="ssh://git@192.0.2.1/srv/state.git",
)
SECRETS = {
    "ANTHROPIC_API_KEY": Secret("sk-ant-test-0123456789"),
    "GITHUB_TOKEN": Secret("ghp_abcdef123456"),
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture
def config() -> AgentConfig:
    return agent_config(HOST)


@pytest.fixture
def service(config: AgentConfig) -> dict[str, list[str]]:
    return parse_unit(render_unit(unit_spec(config)))["Service"]


def test_unit_runs_the_agent_as_the_service_user(service: dict[str, list[str]]) -> None:
    assert service["User"] == ["claude-cluster"] and service["Group"] == ["claude-cluster"]
    assert service["ExecStart"] == [
        "/opt/claude-cluster/current/venv/bin/claude-cluster agent run "
        "--config /etc/claude-cluster/agent.yaml"
    ]
    assert "EnvironmentFile" not in service and "Environment" in service
    assert not [e for e in service["Environment"] if "KEY" in e or "TOKEN" in e]
    assert (service["Restart"], service["RestartSec"]) == (["on-failure"], ["5"])
    assert service["KillMode"] == ["mixed"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"), ("RestrictSUIDSGID", "yes"), ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"), ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""), ("UMask", "0077"),
        ("ReadWritePaths",
         "/opt/claude-cluster/workspace /opt/claude-cluster/logs /var/lib/claude-cluster"),
        # As far as bubblewrap allows (each tried on a test host: docs/security.md).
        ("ReadOnlyPaths", "/var/lib/claude-cluster/.ssh"), ("ProtectProc", "invisible"),
        ("ProtectClock", "yes"), ("PrivateIPC", "yes"),
        ("RemoveIPC", "yes"), ("KeyringMode", "private"), ("DevicePolicy", "closed"),
        ("AmbientCapabilities", ""), ("SystemCallErrorNumber", "EPERM"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ("RestrictNamespaces", "user mnt pid net ipc uts cgroup"),
        ("SystemCallFilter", "@system-service @mount sethostname"),
    ],
)  # fmt: skip
def test_unit_is_hardened(service: dict[str, list[str]], key: str, value: str) -> None:
    assert service[key] == [value]


@pytest.mark.parametrize(
    ("left_out", "instead", "why"),
    [
        ("MemoryDenyWriteExecute", "SystemCallFilter", "node's V8 JIT maps W+X memory"),
        ("ProcSubset", "ProtectProc", "bwrap reads /proc/sys/kernel/overflowuid"),
        ("PrivateUsers", "ProtectProc", "with ProtectProc= systemd 252 fails at step USER"),
        ("PrivateNetwork", "RestrictAddressFamilies", "the agent reaches state repo, forge, API"),
        ("ProtectHostname", "SystemCallFilter", "it refuses bwrap --hostname in its own UTS ns"),
    ],
)
def test_unit_leaves_out_only_what_the_sandbox_or_the_agent_cannot_run_under(
    service: dict[str, list[str]], left_out: str, instead: str, why: str
) -> None:
    assert left_out not in service and instead in service, why


def test_secrets_reach_the_agent_as_a_credential_not_its_environment(
    service: dict[str, list[str]],
) -> None:
    assert service["LoadCredential"] == ["secrets.env:/etc/claude-cluster/secrets.env"]
    assert "EnvironmentFile" not in service


def test_stop_timeout_outlasts_the_agents_grace() -> None:
    for grace in (0.0, 30.0, 90.5):
        config = agent_config(HOST, stop_grace_seconds=grace)
        stop = int(parse_unit(render_unit(unit_spec(config)))["Service"]["TimeoutStopSec"][0])
        assert stop > grace


def test_unit_rendering_is_deterministic(config: AgentConfig) -> None:
    assert render_unit(unit_spec(config)) == render_unit(unit_spec(agent_config(HOST)))
    unit = parse_unit(render_unit(unit_spec(config)))
    assert unit["Install"] == {"WantedBy": ["multi-user.target"]}
    assert unit["Unit"]["Description"] == ["Claude Code Cluster agent agent-1"]


def test_exec_quoting_escapes_what_systemd_would_expand() -> None:
    assert quote_argv(["/bin/x", "--a", "b c", "100%", "$HOME", 'q"']) == (
        '/bin/x --a "b c" 100%% $$HOME "q\\""'
    )


def test_agent_yaml_is_read_back_by_the_agent(config: AgentConfig, tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(render_agent_config(config))
    assert load_agent_config(path, {}, environ={}) == config
    body = yaml.safe_load(path.read_text())
    assert set(body) <= set(AgentConfig.model_fields)
    assert (body["id"], body["state"], body["max_tasks"]) == ("agent-1", HOST.state_repo, 3)
    assert body["specialties"] == ["backend", "docs"]
    assert body["workdir"] == "/opt/claude-cluster/workspace"
    assert "lease_seconds" not in body  # None: the repo's own default applies


def test_secrets_env_has_masked_twin() -> None:
    rendered = render_secrets_env(SECRETS)
    text = rendered.text.reveal()
    assert "ANTHROPIC_API_KEY=sk-ant-test-0123456789\n" in text
    assert "GITHUB_TOKEN=ghp_abcdef123456\n" in text
    assert "ANTHROPIC_API_KEY=***\n" in rendered.masked and "GITHUB_TOKEN=***\n" in rendered.masked
    for shown in (rendered.masked, repr(rendered), str(rendered.text)):
        assert "sk-ant-test" not in shown and "ghp_abc" not in shown
    changed = render_secrets_env({**SECRETS, "GITHUB_TOKEN": Secret("ghp_other999")})
    assert changed.masked == rendered.masked and changed.sha256 != rendered.sha256


def test_secrets_env_refuses_missing_and_unquotable_values() -> None:
    with pytest.raises(ConfigError, match="not set: GITHUB_TOKEN"):
        render_secrets_env({"ANTHROPIC_API_KEY": Secret("sk-ant-x1234")}, ["GITHUB_TOKEN"])
    with pytest.raises(ConfigError, match="GITHUB_TOKEN has characters") as caught:
        render_secrets_env({**SECRETS, "GITHUB_TOKEN": Secret("abc $secret-value")})
    assert "secret-value" not in str(caught.value)


def test_container_spec_is_locked_down(config: AgentConfig) -> None:
    spec = container_spec(config, "claude-code-cluster:0.1.0", user="990:990")
    kwargs = docker_run_kwargs(spec, SECRETS)
    assert kwargs["image"] == "claude-code-cluster:0.1.0" and kwargs["user"] == "990:990"
    assert kwargs["read_only"] is True
    options = kwargs["security_opt"]
    assert options[0] == "no-new-privileges:true"
    assert options[2:] == ["systempaths=unconfined", "apparmor=unconfined"]  # bwrap's --proc
    seccomp = json.loads(options[1].removeprefix("seccomp="))
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["volumes"]["/var/lib/claude-cluster/.ssh"]["mode"] == "ro"
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["command"][-2:] == ["--config", "/etc/claude-cluster/agent.yaml"]
    assert kwargs["volumes"]["/etc/claude-cluster/agent.yaml"]["mode"] == "ro"
    assert kwargs["volumes"]["/opt/claude-cluster/workspace"]["mode"] == "rw"
    assert kwargs["environment"]["GITHUB_TOKEN"] == "ghp_abcdef123456"
    assert spec.env_file == "/etc/claude-cluster/secrets.env"
    assert spec.stop_timeout == unit_spec(config).timeout_stop_seconds
    assert "ghp_" not in repr(spec)


def test_agent_yaml_carries_the_inventory_metrics_port() -> None:
    host = HOST.model_copy(update={"metrics_port": 9464})
    body = yaml.safe_load(render_agent_config(agent_config(host)))
    assert body["metrics_port"] == 9464
    assert "metrics_port" not in yaml.safe_load(render_agent_config(agent_config(HOST)))


def test_the_container_filters_system_calls_as_the_unit_does(service: dict[str, list[str]]) -> None:
    profile = json.loads(seccomp.profile())
    allowed = set(profile["syscalls"][0]["names"])
    assert allowed == seccomp.SYSCALLS and profile["defaultErrnoRet"] == 1  # EPERM, as the unit
    for name in ("unshare", "mount", "umount2", "pivot_root", "clone3", "prlimit64", "setns",
                 "sethostname"):  # fmt: skip
        assert name in allowed, name  # what bubblewrap and its limits use
    for name in ("reboot", "kexec_load", "init_module", "bpf", "ptrace", "perf_event_open",
                 "settimeofday", "swapon", "open_by_handle_at", "socket"):  # fmt: skip
        assert name not in allowed, name
    families = sorted(rule["args"][0]["value"] for rule in profile["syscalls"][1:])
    assert families == sorted(seccomp.ADDRESS_FAMILIES.values()) == [1, 2, 10, 16]
    assert set(seccomp.ADDRESS_FAMILIES) == set(service["RestrictAddressFamilies"][0].split())
    assert service["SystemCallFilter"] == ["@system-service @mount sethostname"]
