"""Hostile task files through the real readers: each gets one reason, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.hooks.install import install
from cluster.state.client import Identity, StateClient
from cluster.state.ids import is_safe_id, key_for_name
from cluster.state.init import init_state_repo
from tests.helpers import ROOT, commit_files, git, task_doc
from tests.unit.test_cli import cli
from tests.unit.test_hooks import SETTINGS, Person, refused


def good(task_id: str, **extra: Any) -> bytes:
    return yaml.safe_dump(task_doc(task_id, **extra), sort_keys=False).encode()


HUGE = b"9" * 5000
# name -> (bytes, what the one reason must say)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "huge-int.yaml": (good("huge-int") + b"issue: " + HUGE + b"\n",
                      "YAML error at line 8, column 8: cannot read this int"),
    "huge-label.yaml": (good("huge-label") + b"labels: [a, " + HUGE + b"]\n",
                        "YAML error at line 8"),
    "bad-date.yaml": (good("bad-date") + b"prompt: 2001-02-30\n",
                      "YAML error at line 8, column 9: cannot read this timestamp"),
    "dup-key.yaml": (good("dup-key") + b"repo: evil/web\n",
                     "YAML error at line 8, column 1: duplicate key 'repo' (first at line 4)"),
    "bool-int.yaml": (good("bool-int", max_attempts=True),
                      "field 'max_attempts': Input should be a valid integer (line"),
}


def reason_of(snap_error: str | None, name: str) -> str:
    assert snap_error is not None, f"{name} was judged valid"
    assert "\n" not in snap_error and snap_error.startswith(f"tasks/{name}")
    return snap_error


def test_agent_snapshot_judges_each_hostile_file_once(tmp_path: Path) -> None:
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=SETTINGS)
    files: dict[str, bytes | str | None] = {f"tasks/{n}": d for n, (d, _) in HOSTILE.items()}
    files["tasks/nl\n.yaml"] = good("nl")
    files["tasks/ok.yaml"] = good("ok")
    commit_files(repo, files, tmp_path / "person")
    client = StateClient(str(repo), tmp_path / "reader", Identity("reader"))
    snap = client.snapshot()
    for name, (_, reason) in HOSTILE.items():
        assert reason in reason_of(snap.tasks[key_for_name(name)].error, name), name
    assert str(snap.tasks["huge-int"].error).endswith("(field 'issue')")
    assert str(snap.tasks["huge-label"].error).endswith("(field 'labels')")
    newline = snap.tasks[key_for_name("nl\n.yaml")]
    assert newline.key.startswith("bad.") and "unsafe file name 'nl\\n'" in str(newline.error)
    assert snap.tasks["ok"].spec is not None
    client.close()


def test_ids_match_in_full() -> None:
    assert is_safe_id("nl") and not is_safe_id("nl\n") and not is_safe_id("a\nb")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_task_submit_answers_with_a_reason(tmp_path: Path, name: str) -> None:
    state = tmp_path / "state.git"
    assert cli("state", "init", str(state), workdir=tmp_path).returncode == 0
    path = tmp_path / name
    path.write_bytes(HOSTILE[name][0])
    done = cli("task", "submit", "--state", str(state), str(path), workdir=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert f"{path}: {HOSTILE[name][1]}" in done.stderr


@pytest.fixture
def person(tmp_path: Path) -> Person:
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=SETTINGS, hooks=ROOT / "hooks")
    return Person(f"file://{repo}", tmp_path / "person")


def _stage(person: Person, files: dict[str, bytes]) -> None:
    git(["fetch", "--quiet", "origin"], person.work)
    git(["reset", "--quiet", "--hard", "origin/main"], person.work)
    for name, data in files.items():
        (person.work / name).write_bytes(data)
        git(["add", name], person.work)


def test_pre_receive_refuses_each_hostile_file_with_its_reason(person: Person) -> None:
    files = {f"tasks/{n}": d for n, (d, _) in HOSTILE.items()}
    files["tasks/nl\n.yaml"] = good("nl")
    _stage(person, files)
    git(["commit", "--quiet", "--no-verify", "-m", "hostile"], person.work)
    text = refused(person.push(), *(f"tasks/{n}: {r}" for n, (_, r) in HOSTILE.items()))
    assert "Traceback" not in text
    assert "unsafe file name 'nl\\n'" in text


def test_pre_commit_refuses_each_hostile_file_with_its_reason(person: Person) -> None:
    assert install(str(person.work)) == ["pre-commit"]
    _stage(person, {f"tasks/{n}": d for n, (d, _) in HOSTILE.items()})
    done = subprocess.run(["git", "commit", "-m", "hostile"], cwd=person.work,
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    for name, (_, reason) in HOSTILE.items():
        assert f"tasks/{name}: {reason}" in done.stderr, (name, done.stderr)
