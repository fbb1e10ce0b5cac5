"""The state repo as health reads it: pending, stale claims, invalid tasks, per-agent claims."""

from __future__ import annotations

import time
from pathlib import Path

from cluster.health.model import AgentView
from cluster.health.staterepo import read_state_facts, summarise
from cluster.state.client import StateClient
from cluster.state.init import init_state_repo
from cluster.state.submit import submit
from tests.clients import state_client

TASK = ("id: {id}\ntitle: t\nspecialty: {specialty}\nrepo: o/r\n"
        "executor: {{kind: command, command: 'true'}}\n")


def _repo(tmp_path: Path) -> tuple[Path, StateClient]:
    repo = tmp_path / "state.git"
    init_state_repo(repo)
    files = []
    for key, specialty in (("t1", "backend"), ("t2", "docs"), ("t3", "backend")):
        path = tmp_path / f"{key}.yaml"
        path.write_text(TASK.format(id=key, specialty=specialty))
        files.append(path)
    person = state_client(repo, tmp_path, "operator", work="person")
    submit(person, files)
    return repo, person


def test_summary_counts_pending_stale_and_claims_per_agent(tmp_path: Path):
    repo, _ = _repo(tmp_path)
    web = state_client(repo, tmp_path, "web-1", work="web")
    snap = web.snapshot()
    assert web.claim(snap, snap.tasks["t1"], lease=1.0) is not None
    assert web.claim(snap, snap.tasks["t2"], lease=600.0) is not None
    facts = summarise(str(repo), web.snapshot(), time.time() + 30)
    assert facts.reachable and facts.pending == 1  # t3
    assert facts.oldest_pending_age is not None and facts.oldest_pending_age >= 30
    assert [(c.task, c.agent) for c in facts.stale] == [("t1", "web-1")]
    assert facts.stale[0].expired_for > 25
    assert facts.agents["web-1"] == AgentView(heartbeat_age=None, holding=("t2",), expired=("t1",))
    assert facts.invalid == ()


def test_invalid_tasks_are_listed(tmp_path: Path):
    repo, person = _repo(tmp_path)
    from cluster.state.gitobj import TreeEditor

    snap = person.snapshot()  # a bad file committed straight to main, as a plain commit would
    store = person.remote.store
    editor = TreeEditor(store, store.commit(snap.main).tree)  # type: ignore[arg-type]
    editor.put("tasks/broken.yaml", store.write_blob(b"id: broken\ntitle: [\n"))
    commit = store.write_commit(editor.write(), (snap.main,), "p <p@x>", int(time.time()), "bad")  # type: ignore[arg-type]
    from cluster.state.gitcmd import RefUpdate

    assert person.remote.push([RefUpdate("refs/heads/main", commit, snap.main)]).ok
    facts = read_state_facts(str(repo), tmp_path / "work")
    assert facts.invalid == ("broken",)


def test_unreachable_repo_is_an_error_not_an_exception(tmp_path: Path):
    facts = read_state_facts(str(tmp_path / "nowhere.git"), tmp_path / "work")
    assert not facts.reachable and "not a git repository" in (facts.error or "")
    remote = read_state_facts("ssh://nobody@127.0.0.1:1/x.git", tmp_path / "work",
                              "ssh -o BatchMode=yes -o ConnectTimeout=2")
    assert not remote.reachable and remote.error
    assert remote.agent("x") is None
