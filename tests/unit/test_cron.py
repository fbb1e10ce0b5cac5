"""Crontab entries in a real tab file, and ``maintain`` on a real state repo."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke.program import Program

from cluster.backup import cron as crontab
from cluster.backup import load_settings, maintain
from cluster.errors import ConfigError
from cluster.state import client as client_module
from cluster.state.checker import check
from cluster.state.client import Held, StateClient
from cluster.state.gitcmd import list_refs, run_git
from cluster.state.ids import archive_path
from cluster.state.init import init_state_repo
from cluster.state.records import Heartbeat, Result
from cluster.tasks.backup import ROOT, ns
from tests.clients import state_client
from tests.helpers import commit_files, make_state, task_doc, task_files

FOREIGN = """MAILTO=ops@example.invalid
# the team's own jobs
0 1 * * * /usr/local/bin/rotate-logs # rotate
@reboot /usr/local/bin/warm-cache
"""


def invoke(*argv: str) -> None:
    Program(namespace=ns).run(["invoke", *argv], exit=False)


def test_install_twice_show_change_and_remove_leave_foreign_entries_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(FOREIGN)
    logs = tmp_path / "logs"
    flags = ["--tabfile", str(tab), "--log-dir", str(logs), "--state", str(tmp_path / "s.git")]
    invoke("cron", "--install", *flags)
    first = tab.read_text()
    invoke("cron", "--install", *flags)
    assert tab.read_text() == first  # idempotent: nothing rewritten, one copy of each
    assert "already up to date" in capsys.readouterr().out
    assert first.startswith(FOREIGN)
    jobs = {job.name: job for job in crontab.current_jobs(crontab.open_tab(tab))}
    assert sorted(jobs) == ["backup", "health", "maintain"]
    assert [first.count(f"# claude-cluster:{n}") for n in jobs] == [1, 1, 1]
    venv_invoke = Path(sys.executable).parent / "invoke"
    assert jobs["health"].schedule == "*/5 * * * *"
    assert jobs["health"].command.endswith(
        f"{venv_invoke} -r {ROOT} health --json >> {logs / 'health.log'} 2>&1")
    assert jobs["backup"].schedule == crontab.BACKUP_SCHEDULE
    assert f"backup --state {tmp_path / 's.git'}" in jobs["backup"].command

    invoke("cron", "--show", "--tabfile", str(tab))
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 3 and all("claude-cluster:" in line for line in shown)

    invoke("cron", "--install", *flags, "--backup-schedule", "0 2 * * *")
    assert "replace claude-cluster:backup" in capsys.readouterr().out
    assert crontab.current_jobs(crontab.open_tab(tab))[0].schedule == "0 2 * * *"

    invoke("cron", "--remove", "--tabfile", str(tab))
    assert tab.read_text().strip() == FOREIGN.strip()


def test_plan_replaces_duplicates_and_is_empty_once_converged(tmp_path: Path) -> None:
    wanted = crontab.wanted_jobs(ROOT, Path("/venv/bin"), tmp_path)
    twice = [wanted[0], wanted[0], *wanted[1:]]
    assert [a.kind for a in crontab.plan(twice, wanted)] == ["replace"]
    assert crontab.plan(wanted, wanted) == []
    tab = crontab.open_tab(tmp_path / "new" / "crontab")  # a missing tab file starts empty
    crontab.apply(tab, crontab.plan(crontab.current_jobs(tab), twice))
    crontab.apply(tab, crontab.plan(crontab.current_jobs(tab), wanted))
    assert crontab.current_jobs(crontab.open_tab(tmp_path / "new" / "crontab")) == wanted
    with pytest.raises(ConfigError, match="bad schedule"):
        crontab.wanted_jobs(ROOT, Path("/venv/bin"), tmp_path, backup_schedule="daily-ish")


class _Past:
    """client.py's clock set back: the first batch of results is folded 40 days ago."""

    @staticmethod
    def time() -> float:
        return time.time() - 40 * 86400


def _run_and_fold(client: StateClient, keys: list[str]) -> None:
    for key in keys:
        snap = client.snapshot()
        held = client.claim(snap, snap.tasks[key], 600)
        assert isinstance(held, Held)
        assert client.finish(held, Result(task=key, status="succeeded", attempt=1,
                                          agent=client.identity.name))
    assert client.fold(client.snapshot(), 100) == len(keys)


def _heartbeat(agent: str, seen: float) -> Heartbeat:
    return Heartbeat(id=agent, host="h", pid=1, version="0", specialties=("backend",),
                     max_tasks=1, holding=(), state="running", started_at=seen,
                     last_seen=seen, heartbeat_seconds=1.0)


def test_maintain_prunes_old_results_keeps_history_deps_and_live_heartbeats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_state(tmp_path)
    old, new = ["old1", "old2", "parent"], ["new1"]
    docs = [task_doc(k) for k in old + new] + [task_doc("child", depends_on=["parent"])]
    commit_files(repo, task_files(docs[:-1]), tmp_path / "person")
    agent = state_client(repo, tmp_path, "a1", work="work")
    with monkeypatch.context() as patch:
        patch.setattr(client_module, "time", _Past)
        _run_and_fold(agent, old)
    _run_and_fold(agent, new)
    commit_files(repo, task_files(docs[-1:]), tmp_path / "person")
    agent.stop_heartbeat(_heartbeat("gone", time.time() - 30 * 86400), None)
    agent.stop_heartbeat(_heartbeat("alive", time.time()), None)

    settings = load_settings({"state": str(repo), "archive_days": 30, "agent_days": 7}, {})
    outcome = maintain(settings)
    assert outcome.pruned == ["old1", "old2"]
    assert outcome.kept_for_dependents == ["parent"]
    assert outcome.heartbeats_deleted == ["gone"]
    assert outcome.gc == f"git gc on {repo.resolve()}"
    snap = agent.snapshot()
    assert sorted(snap.archived) == ["new1", "parent"]
    assert sorted(snap.agents) == ["alive"]
    assert (repo / "packed-refs").exists()  # gc packed the refs
    for key in ("old1", "old2"):  # main's history still holds the pruned results
        log = run_git(["log", "--format=%H", "refs/heads/main", "--",
                       f"{archive_path(key)}/result.yaml"], git_dir=repo).stdout.split()
        assert len(log) == 2  # archived by a fold, removed by maintain
        run_git(["cat-file", "-e", f"{log[1]}:{archive_path(key)}/result.yaml"], git_dir=repo)
    _run_and_fold(agent, ["child"])  # its dependency is still there to be found
    report = check(repo)
    assert report.problems() == {} and report.summary()["done"] == 5
    assert maintain(settings).pruned == ["parent"]  # no task on main needs it any more
    main = list_refs(["refs/heads/main"], git_dir=repo)
    assert maintain(settings).commit is None  # nothing more to prune: main stays
    assert list_refs(["refs/heads/main"], git_dir=repo) == main
    agent.close()


def test_maintain_adapter_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_state(tmp_path)
    invoke("maintain", "--state", str(repo))
    out: Any = capsys.readouterr().out
    assert "pruned 0 archived result(s)" in out and "git gc on" in out


def test_a_prune_passes_the_hook_and_its_ids_stay_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the server hook (file://): the prune is accepted; the pruned id is not taken for
    a rewritten archive, is still known, and a file bringing it back is refused by the hook and
    replayed (never run) where no hook runs."""
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=b"{}\n", hooks=ROOT / "hooks")
    commit_files(repo, task_files([task_doc("old1"), task_doc("new1")]), tmp_path / "person")
    with state_client(f"file://{repo}", tmp_path, "a1", work="work") as agent:
        with monkeypatch.context() as patch:
            patch.setattr(client_module, "time", _Past)
            _run_and_fold(agent, ["old1"])
        _run_and_fold(agent, ["new1"])
        settings = load_settings({"state": f"file://{repo}", "archive_days": 30}, {})
        assert maintain(settings).pruned == ["old1"]
        snap = agent.snapshot()
        assert "old1" not in snap.archived and snap.pruned == {"old1"}
        assert snap.unarchived() == [] and snap.known("old1")
        result = snap.result("old1")
        assert result is not None and result.status == "succeeded"
        person = tmp_path / "again"
        with pytest.raises(AssertionError, match="already finished"):
            commit_files(repo, task_files([task_doc("old1")]), person)
        run_git(["reset", "--quiet", "--hard", "origin/main"], git_dir=person / ".git",
                work_tree=person)
        # Where no hook runs (a fetch into the repo), the file lands and is never run.
        (person / "tasks").mkdir(exist_ok=True)
        (person / "tasks" / "old1.yaml").write_text(yaml.safe_dump(task_doc("old1")))
        env = {"GIT_AUTHOR_NAME": "p", "GIT_AUTHOR_EMAIL": "p@p",
               "GIT_COMMITTER_NAME": "p", "GIT_COMMITTER_EMAIL": "p@p"}
        run_git(["add", "tasks"], git_dir=person / ".git", work_tree=person)
        run_git(["commit", "--quiet", "-m", "again"], git_dir=person / ".git",
                work_tree=person, env=env)
        run_git(["fetch", "--quiet", str(person), "HEAD:refs/heads/main"], git_dir=repo)
        snap = agent.snapshot()
        assert snap.state("old1") == "replayed" and snap.unarchived() == []
