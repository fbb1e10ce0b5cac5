"""Units render byte for byte as before (a changed byte redeploys every host), from plain data:
rendering imports nothing of the agent."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from typing import Any

import pytest

from cluster.inventory.model import HostSpec
from cluster.secret import Secret
from cluster.units.agent_yaml import agent_config, render_agent_config
from cluster.units.container import container_spec, docker_run_kwargs
from cluster.units.secrets_env import agent_needs, render_secrets_env
from cluster.units.systemd import render_unit, unit_spec

HOST = HostSpec(name="agent-1", hostname="192.0.2.10", username="deploy",
                specialties=("backend", "docs"), max_tasks=3,
                state_repo="ssh://git@192.0.2.1/srv/state.git", metrics_port=9100)
SECRETS = {"ANTHROPIC_API_KEY": Secret("sk-ant-test-0123456789"),
           "GITHUB_TOKEN": Secret("ghp_abcdef123456"),
           "CLAUDE_CODE_OAUTH_TOKEN": Secret("sk-ant-oat01-x")}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "claude-code": {"executors": ("claude-code", "command"), "claude_code_credential": "oauth",
                    "stop_grace_seconds": 12.5, "forge": "github",
                    "sandbox": {"mode": "bwrap", "allow_hosts": ["pypi.org:443"]},
                    "prompts": {"backend": "be careful"}},
    "claude": {"executors": ("claude",), "model": "claude-opus-4-1", "sandbox": "off"},
}
# sha256 of each rendering, taken from the code before the agent's settings model left the
# agent package (cluster/agent_schema.py): the same inputs must give the same bytes. The
# agent.yaml ones were taken again when the settings gained follow_up_max_rounds (#17), the
# one line each of them gained, and again when they gained state_watch_command (#18) and
# state_session_command (#18: the one line, checked by taking it out again).
GOLDEN = {
    ("plain", "agent.yaml"): "16c6853902ebac5438a320a53709db459d493257b0b8e3c9fc5281f6de5194a8",
    ("plain", "unit"): "ed81d189959232084800397180a852b0a440e4d2b7d70b5e54f34cad767a0a4f",
    ("plain", "container"): "f46f70d17caeaa1908949a86f2aa67e2698766ab7d1e09a38998a720ced4a63b",
    ("plain", "secrets"): "77fd976dd45b391bbf4b030da7d2a9059775d8091fee3a0cf12bf132876b3386",
    ("claude-code", "agent.yaml"):
        "209d47d677eceb81910ee5e3ba38da9ed0ad85f7eed2756eca65a2374b959658",
    ("claude-code", "unit"): "1bb98637d4e22249a43cbf4bc20683ef49741ffd0551cec579ada9d01cced1a6",
    ("claude-code", "container"):
        "a70d59143abbd5a13e94caee184413bca2c55fc88195023654697629714bb120",
    ("claude-code", "secrets"):
        "8f976cf91aa6f1ef494deb0c88854545e2cc026d631c2e08b965abd9f155a4d3",
    ("claude", "agent.yaml"): "cde5f5e8b582a3af4bfd9648c8fe42918b9b60b8562582b83a93284d52bfc4b4",
    ("claude", "unit"): "ed81d189959232084800397180a852b0a440e4d2b7d70b5e54f34cad767a0a4f",
    ("claude", "container"): "ff9f84c40d362059ebaccc139938902b986db47dd40f7d8398eeadf9480c2da4",
    ("claude", "secrets"): "0f1d7635b8e6f91055f98c1378c571a63c1ef0eb80536d6f25b7902acb5a8d71",
}


def renderings(overrides: dict[str, Any]) -> dict[str, str]:
    config = agent_config(HOST, **overrides)
    needs = agent_needs(config)
    shipped = needs.shipped(SECRETS)
    kwargs = docker_run_kwargs(container_spec(config, "img:1"), shipped)
    return {
        "agent.yaml": render_agent_config(config),
        "unit": render_unit(unit_spec(config)),
        "container": json.dumps(kwargs, sort_keys=True),
        "secrets": render_secrets_env(shipped, needs.required).text.reveal(),
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_units_render_the_same_bytes_as_before(variant: str) -> None:
    for kind, text in renderings(VARIANTS[variant]).items():
        digest = hashlib.sha256(text.encode()).hexdigest()
        assert digest == GOLDEN[(variant, kind)], f"{variant} {kind} renders differently"


def test_rendering_imports_nothing_of_the_agent() -> None:
    probe = ("import sys, cluster.units.agent_yaml, cluster.units.container, "
             "cluster.units.secrets_env, cluster.units.systemd; "
             "print(sorted(m for m in sys.modules if m.startswith('cluster.agent.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
