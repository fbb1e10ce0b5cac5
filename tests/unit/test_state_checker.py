"""``check`` and the agents agree on every entry of ``tasks/``, however deep its files lie."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.state.checker import check
from cluster.state.gitcmd import run_git
from cluster.state.ids import key_for_name
from cluster.state.report import task_rows
from tests.clients import state_client
from tests.helpers import commit_files, make_state, task_doc


def test_check_and_agents_agree_on_nested_paths(tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    files: dict[str, bytes | str | None] = {
        "tasks/good.yaml": yaml.safe_dump(task_doc("good")),
        "tasks/dir.yaml/x": b"id: x\n",
        "tasks/deep/a/b.yaml": yaml.safe_dump(task_doc("b")),
        "tasks/kept/.gitkeep": b"",
        "tasks/.hidden.yaml": yaml.safe_dump(task_doc("hidden")),
    }
    commit_files(repo, files, tmp_path / "person")
    proc = agents(repo, "solo", exit_when_idle=True, lease=5, heartbeat=0.5)
    assert proc.wait(120) == 0, proc.tail()
    snap = state_client(repo, tmp_path).snapshot()
    entries = {"dir.yaml": "dir", "deep": key_for_name("deep"), "kept": key_for_name("kept")}
    report = check(repo)
    assert report.problems() == {}, report.problems()
    assert set(report.tasks) == {"good", *entries.values()}  # .hidden.yaml: ignored by both
    for name, key in entries.items():
        result = snap.result(key)
        assert result is not None and result.status == "invalid", name
        assert "a directory, not a task file" in result.reason
        assert report.tasks[key] == ("done", "invalid"), name
    assert report.tasks["good"] == ("done", "succeeded")


QUOTED = ["nl\n.yaml", 'q "x".yaml', "tab\t.yaml", "ünï.yaml", "back\\slash.yaml"]


def test_check_status_and_agents_agree_on_names_git_would_quote(
        tmp_path: Path, agents: Any) -> None:
    """Names that plain ``git log`` prints quoted (``"tasks/nl\\n.yaml"``) are read NUL-separated
    by every reader: the agent judges each once, ``check`` finds each done, ``status`` agrees."""
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    files: dict[str, bytes | str | None] = {f"tasks/{n}": yaml.safe_dump(task_doc("x"))
                                            for n in QUOTED}
    files["tasks/good.yaml"] = yaml.safe_dump(task_doc("good"))
    commit_files(repo, files, tmp_path / "person")
    plain = run_git(["log", "--format=", "--name-only", "refs/heads/main"], git_dir=repo).stdout
    assert '"tasks/nl\\n.yaml"' in plain  # the control: a line-based reader sees quoted names
    proc = agents(repo, "solo", exit_when_idle=True, lease=5, heartbeat=0.5)
    assert proc.wait(120) == 0, proc.tail()
    judged = {e["task"] for e in proc.events() if e["event"] == "judged"}
    keys = {key_for_name(n) for n in QUOTED}
    assert judged == keys
    report = check(repo)
    assert report.problems() == {}, report.problems()
    assert set(report.tasks) == {"good", *keys}
    assert all(report.tasks[k] == ("done", "invalid") for k in keys)
    client = state_client(repo, tmp_path)
    rows = {row["id"]: row["state"] for row in task_rows(client.snapshot())}
    client.close()
    assert rows == {"good": "succeeded", **dict.fromkeys(keys, "invalid")}
