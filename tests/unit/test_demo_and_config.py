"""The local demo end to end, and the agent's layered settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.agent.config import load_agent_config
from cluster.agent.forge_local import LocalForge
from cluster.demo import BRANCH, REVIEW, REVIEWER, run_demo
from cluster.errors import ConfigError, ValidationError
from cluster.intake.followups import follow_up_id
from cluster.state.checker import check
from cluster.state.client import Identity, StateClient
from tests.helpers import git


def test_demo_runs_every_task_to_one_result_and_one_review_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    demo = tmp_path / "demo"
    assert run_demo(demo, agents=2) == 0
    summary = check(demo / "state.git").summary()
    assert summary["statuses"] == {"succeeded": 3} and summary["duplicated"] == 0
    records = list((demo / "pull-requests").rglob("*.json"))
    assert len(records) == 2  # one pull request per opening task; the follow-up opens none
    # The review round: the follow-up pushed to the fix-add branch, past the reviewed head,
    # changing both commented lines, answered in both threads and on the pull request.
    target, forge = str(demo / "sample.git"), LocalForge(demo / "pull-requests")
    [pull] = [p for p in forge.open_pulls(target) if p.head_branch == BRANCH]
    [review] = forge.reviews(target, pull.number)
    assert (review.author, review.state) == (REVIEWER, "CHANGES_REQUESTED")
    comments = forge.review_comments(target, pull.number)
    asked = [c for c in comments if c.review_id == review.id]
    assert [(c.path, c.line, c.body) for c in asked] == list(REVIEW)
    replies = [c for c in comments if c.in_reply_to is not None]
    assert sorted(c.in_reply_to or 0 for c in replies) == sorted(c.id for c in asked)
    assert {c.author for c in replies} == {forge.login}
    assert any(c.author == forge.login for c in forge.pull_comments(target, pull.number))
    assert pull.head_sha != review.commit_id
    assert git(["merge-base", "--is-ancestor", review.commit_id, pull.head_sha],
               demo / "sample.git") == ""
    calc = git(["show", f"{pull.head_sha}:calc.py"], demo / "sample.git")
    assert '"""' in calc.splitlines()[1] and "total = a + b" in calc
    client = StateClient(str(demo / "state.git"), tmp_path / "reader", Identity("test"))
    try:
        result = client.snapshot().result(follow_up_id(target, pull.number, "review", review.id))
    finally:
        client.close()
    assert result is not None and result.status == "succeeded" and result.round == 1
    assert sorted(result.replied_to) == sorted(c.id for c in asked)
    assert result.head == pull.head_sha


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
