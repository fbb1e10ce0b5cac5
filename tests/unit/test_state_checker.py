"""``check`` and the agents agree on every entry of ``tasks/``, however deep its files lie."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.state.checker import check
from cluster.state.client import Identity, StateClient
from cluster.state.ids import key_for_name
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
    snap = StateClient(str(repo), tmp_path / "reader", Identity("reader")).snapshot()
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
