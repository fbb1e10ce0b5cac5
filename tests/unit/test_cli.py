"""The claude-cluster command, run as a real process against real repos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import ROOT, task_doc


def cli(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {"CLUSTER_WORKDIR": str(workdir), "PATH": "/usr/bin:/bin", "HOME": str(workdir)}
    return subprocess.run([sys.executable, "-m", "cluster", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False, timeout=120)


def write(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_init_submit_list_show_cancel_status(tmp_path: Path) -> None:
    state = tmp_path / "state.git"
    done = cli("state", "init", str(state), workdir=tmp_path)
    assert done.returncode == 0, done.stderr
    again = cli("state", "init", str(state), workdir=tmp_path)
    assert again.returncode == 1 and "already holds a git repository" in again.stderr

    one = write(tmp_path / "one.yaml", task_doc("one", priority="high"))
    two = write(tmp_path / "two.yaml", task_doc("two", depends_on=["one"]))
    done = cli("task", "submit", "--state", str(state), str(one), str(two), "--json",
               workdir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["submitted"] == ["one", "two"]

    listed = json.loads(cli("task", "list", "--state", f"file://{state}", "--json",
                            workdir=tmp_path).stdout)
    assert [(r["id"], r["state"], r["priority"]) for r in listed] == [
        ("one", "pending", "high"), ("two", "pending", "medium")]

    shown = json.loads(cli("task", "show", "--state", str(state), "one", "--json",
                           workdir=tmp_path).stdout)
    assert shown["state"] == "pending" and "id: one" in shown["file"]

    done = cli("task", "cancel", "--state", str(state), "two", "--reason", "changed my mind",
               workdir=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(cli("task", "show", "--state", str(state), "two", "--json",
                           workdir=tmp_path).stdout)
    assert (shown["state"], shown["reason"]) == ("cancelled", "changed my mind")

    status = json.loads(cli("status", "--state", str(state), "--json", workdir=tmp_path).stdout)
    assert status["tasks"]["pending"] == 1 and status["tasks"]["cancelled"] == 1
    assert status["agents"] == {"total": 0, "online": 0, "offline": 0}


def test_submit_refuses_bad_files_and_pushes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state.git"
    assert cli("state", "init", str(state), workdir=tmp_path).returncode == 0
    good = write(tmp_path / "good.yaml", task_doc("good"))
    bad = write(tmp_path / "bad.yaml", {**task_doc("bad"), "specialty": "astrology"})
    done = cli("task", "submit", "--state", str(state), str(good), str(bad), workdir=tmp_path)
    assert done.returncode == 2
    assert "bad.yaml: field 'specialty': unknown specialty 'astrology'" in done.stderr
    listed = json.loads(cli("task", "list", "--state", str(state), "--json",
                            workdir=tmp_path).stdout)
    assert listed == []
    assert cli("task", "submit", "--state", str(state), str(good), workdir=tmp_path).returncode == 0
    dup = cli("task", "submit", "--state", str(state), str(good), workdir=tmp_path)
    assert dup.returncode == 2 and "id 'good' is already used" in dup.stderr


def test_unreachable_state_repo_is_a_clear_error(tmp_path: Path) -> None:
    done = cli("status", "--state", str(tmp_path / "nowhere.git"), workdir=tmp_path)
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
    not_repo = tmp_path / "plain"
    not_repo.mkdir()
    done = cli("task", "list", "--state", str(not_repo), workdir=tmp_path)
    assert done.returncode == 2 and "is not a git repository" in done.stderr


def test_agent_refuses_bad_settings(tmp_path: Path) -> None:
    done = cli("agent", "run", "--state", str(tmp_path), "--id", "Bad Id", "--specialty",
               "backend", workdir=tmp_path)
    assert done.returncode == 2 and "unsafe agent id 'Bad Id'" in done.stderr


def test_check_classifies_history_locally_and_through_a_url(tmp_path: Path) -> None:
    state = tmp_path / "state.git"
    assert cli("state", "init", str(state), workdir=tmp_path).returncode == 0
    one = write(tmp_path / "one.yaml", task_doc("one"))
    assert cli("task", "submit", "--state", str(state), str(one), workdir=tmp_path).returncode == 0
    for url in (str(state), f"file://{state}"):
        done = cli("check", "--state", url, "--json", workdir=tmp_path)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert (report["tasks"], report["lost"]) == (1, 1)
        assert report["problems"] == {"one": {"verdict": "lost", "detail": "no terminal result"}}
    strict = cli("check", "--state", str(state), "--strict", workdir=tmp_path)
    assert strict.returncode == 1 and "one: lost" in strict.stdout
