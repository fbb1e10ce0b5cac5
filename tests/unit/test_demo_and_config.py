"""The local demo end to end, and the agent's layered settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.agent.config import load_agent_config
from cluster.demo import run_demo
from cluster.errors import ConfigError, ValidationError
from cluster.state.checker import check


def test_demo_runs_every_task_to_one_result(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert run_demo(tmp_path / "demo", agents=2) == 0
    summary = check(tmp_path / "demo" / "state.git").summary()
    assert summary["statuses"] == {"succeeded": 2} and summary["duplicated"] == 0
    records = list((tmp_path / "demo" / "pull-requests").rglob("*.json"))
    assert len(records) == 2  # one pull request per task, recorded by the local forge


def test_agent_settings_layer_file_environment_flags(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("state: /srv/state.git\nid: web-1\nspecialties: [backend]\nmax_tasks: 2\n")
    env = {"CLUSTER_AGENT_MAX_TASKS": "3", "CLUSTER_AGENT_SPECIALTIES": "backend,devops"}
    config = load_agent_config(path, {"max_tasks": 4, "id": None}, env)
    assert config.max_tasks == 4  # flags win over the environment, which wins over the file
    assert config.specialties == ("backend", "devops")
    assert config.id == "web-1"


def test_agent_settings_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read agent config"):
        load_agent_config(tmp_path / "missing.yaml", {}, {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("state: x\nid: ok\nspecialties: [backend]\ncolour: red\n")
    with pytest.raises(ValidationError, match="'colour': Extra inputs are not permitted"):
        load_agent_config(bad, {}, {})


@pytest.mark.parametrize(("text", "reason"), [
    ("id: a1\nid: a2\n", "line 2, column 1: duplicate key 'id' (first at line 1)"),
    ("id: a1\nmax_tasks: " + "9" * 5000 + "\n", "line 2, column 12: cannot read this int"),
    ("[" * 3000 + "]" * 3000, "exceeded maximum nesting depth"),
    ("- a\n", "expected a mapping of settings"),
])
def test_agent_config_files_are_read_strictly(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
