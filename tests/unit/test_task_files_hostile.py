"""Hostile task files through the real readers: each gets one reason, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.errors import ValidationError
from cluster.hooks.install import install
from cluster.state.ids import is_safe_id, key_for_name
from cluster.state.init import init_state_repo
from cluster.state.settings import RepoSettings, parse_settings
from tests.clients import state_client
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
    client = state_client(repo, tmp_path)
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


# cluster.yaml, read by every agent on every change of main: one bad file must not stop them.
HOSTILE_SETTINGS: dict[str, tuple[bytes, str]] = {
    "huge-int": (b"lease_seconds: " + HUGE + b"\n",
                 "YAML error at line 1, column 16: cannot read this int"),
    "dup-key": (b"lease_seconds: 30\nlease_seconds: 3000\n",
                "YAML error at line 2, column 1: duplicate key 'lease_seconds'"),
    "bool-int": (b"fold_batch: true\n", "field 'fold_batch': Input should be a valid integer"),
    "bool-float": (b"lease_seconds: yes\n", "field 'lease_seconds': Input should be a valid"),
    "deep": (b"[" * 3000 + b"]" * 3000, "YAML error at line 1"),
    "not-utf8": (b"\xff\xfe", "not UTF-8"),
    "a-list": (b"- 1\n", "expected a mapping of settings, found list"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SETTINGS))
def test_hostile_settings_are_one_reason(name: str) -> None:
    data, reason = HOSTILE_SETTINGS[name]
    with pytest.raises(ValidationError) as caught:
        parse_settings(data)
    (problem,) = caught.value.problems
    assert reason in problem and "\n" not in problem, problem


def test_hostile_settings_on_main_leave_the_agents_on_defaults(tmp_path: Path) -> None:
    """Written where no hook runs (a plain-path writer): every reader falls back to the
    defaults rather than raising; the hook refuses the same file with its reason."""
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=SETTINGS)
    work = tmp_path / "person"
    commit_files(repo, {"tasks/ok.yaml": good("ok")}, work)
    with state_client(repo, tmp_path) as client:
        for name, (data, _) in HOSTILE_SETTINGS.items():
            (work / "cluster.yaml").write_bytes(data)
            git(["commit", "--quiet", "--no-verify", "-am", name], work)
            git(["--git-dir", str(repo), "fetch", "--quiet", str(work), "HEAD:refs/heads/main"],
                ROOT)  # a fetch into the repo: no pre-receive hook runs
            snap = client.snapshot()
            assert snap.settings == RepoSettings(), name
            assert snap.tasks["ok"].spec is not None, name


def test_pre_receive_refuses_hostile_settings_with_their_reason(person: Person) -> None:
    for name, (data, reason) in HOSTILE_SETTINGS.items():
        _stage(person, {"cluster.yaml": data})
        git(["commit", "--quiet", "--no-verify", "-m", name], person.work)
        text = refused(person.push(), f"cluster.yaml: {reason}")
        assert "Traceback" not in text, name
