"""The state repo's hooks on a real bare repo: pushes through file:// are judged and explained."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.hooks.install import install, render
from cluster.state.client import Held, StateClient
from cluster.state.gitcmd import list_refs
from cluster.state.gitobj import ObjectStore
from cluster.state.ids import archive_path
from cluster.state.init import init_state_repo
from cluster.state.records import Heartbeat, Record, Result
from cluster.state.reflocks import STALE_LOCK_SECONDS
from cluster.state.submit import cancel
from tests.clients import state_client
from tests.helpers import ROOT, git, poll, task_doc

SETTINGS = b"fold_delay_seconds: 0.2\nretry_backoff_seconds: 0.2\n"


class Person:
    """A clone of the state repo that commits and pushes as people do (hooks judge the push)."""

    def __init__(self, url: str, work: Path) -> None:
        self.url, self.work = url, work
        git(["clone", "--quiet", url, str(work)], ROOT)
        git(["config", "user.name", "Test Person"], work)
        git(["config", "user.email", "person@example.invalid"], work)

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        git(["fetch", "--quiet", "origin"], self.work)
        git(["reset", "--quiet", "--hard", "origin/main"], self.work)
        for name, text in files.items():
            if text is None:
                git(["rm", "-q", name], self.work)
                continue
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
            git(["add", name], self.work)
        git(["commit", "--quiet", "--no-verify", "-m", message], self.work)
        return git(["rev-parse", "HEAD"], self.work).strip()

    def push(self, *specs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "push", "--porcelain", self.url, *(specs or ("HEAD:main",))],
                              cwd=self.work, capture_output=True, text=True, check=False)

    @property
    def store(self) -> ObjectStore:
        return ObjectStore(self.work / ".git")


def task_yaml(task_id: str, **extra: Any) -> str:
    return yaml.safe_dump(task_doc(task_id, **extra))


def refused(done: subprocess.CompletedProcess[str], *lines: str) -> str:
    assert done.returncode != 0, f"push was accepted:\n{done.stdout}{done.stderr}"
    assert "pre-receive hook declined" in done.stdout + done.stderr
    for line in lines:
        assert line in done.stderr, f"{line!r} not in:\n{done.stderr}"
    return done.stderr


def accepted(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"push was refused:\n{done.stderr}"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=SETTINGS, hooks=ROOT / "hooks")
    return repo


@pytest.fixture
def person(state: Path, tmp_path: Path) -> Person:
    return Person(f"file://{state}", tmp_path / "person")


def agent(state: Path, tmp_path: Path, name: str) -> StateClient:
    return state_client(f"file://{state}", tmp_path, name, work=f"agent-{name}")


def claimed(state: Path, tmp_path: Path, person: Person, task_id: str = "t1",
            name: str = "agent-a") -> tuple[StateClient, Held]:
    person.commit({f"tasks/{task_id}.yaml": task_yaml(task_id)})
    accepted(person.push())
    client = agent(state, tmp_path, name)
    snap = client.snapshot()
    held = client.claim(snap, snap.tasks[task_id], 30)
    assert isinstance(held, Held)
    return client, held


def record_commit(store: ObjectStore, record: Record, parents: tuple[str, ...]) -> str:
    tree = store.single_file_tree(record.FILE, record.to_yaml())
    return store.write_commit(tree, parents, "Rogue <rogue@example.invalid>", int(time.time()),
                              "rogue write")


def result(held: Held, agent_name: str, status: str = "succeeded") -> Result:
    return Result(task=held.key, status=status, attempt=held.claim.attempt,  # type: ignore[arg-type]
                  agent=agent_name)


# -- main: people's task files --------------------------------------------------------------


def test_good_task_is_accepted(person: Person, state: Path) -> None:
    sha = person.commit({"tasks/t1.yaml": task_yaml("t1")})
    accepted(person.push())
    assert list_refs(["refs/heads/main"], git_dir=state)["refs/heads/main"] == sha


def test_yaml_error_is_refused_with_line(person: Person) -> None:
    person.commit({"tasks/t1.yaml": "id: t1\ntitle: [unclosed\n"})
    refused(person.push(), "tasks/t1.yaml: YAML error at line")


def test_unknown_field_is_refused(person: Person) -> None:
    sha = person.commit({"tasks/t1.yaml": task_yaml("t1", colour="blue")})
    refused(person.push(), f"refs/heads/main {sha[:12]}: tasks/t1.yaml: field 'colour': "
                           "unknown field")


def test_unknown_specialty_uses_the_commits_own_settings(person: Person) -> None:
    person.commit({"tasks/t1.yaml": task_yaml("t1", specialty="ml")})
    refused(person.push(), "tasks/t1.yaml: field 'specialty': unknown specialty 'ml'")
    person.commit({"tasks/t1.yaml": task_yaml("t1", specialty="ml"),
                   "cluster.yaml": "specialties: [ml]\n"})
    accepted(person.push())


def test_unsafe_id_and_stray_files_are_refused(person: Person) -> None:
    person.commit({"tasks/Bad Name.yaml": task_yaml("t1"), "notes.txt": "hi\n",
                   "cluster.yaml": "lease_seconds: -1\n"})
    text = refused(person.push(), "tasks/Bad Name.yaml: unsafe file name 'Bad Name'",
                   "notes.txt: outside tasks/, cluster.yaml and README.md",
                   "cluster.yaml: ")
    assert len([ln for ln in text.splitlines() if "refs/heads/main" in ln]) == 3


def test_editing_or_removing_a_claimed_task_is_refused(
        person: Person, state: Path, tmp_path: Path) -> None:
    claimed(state, tmp_path, person)
    person.commit({"tasks/t1.yaml": task_yaml("t1", priority="high")})
    refused(person.push(), "tasks/t1.yaml: task 't1' is in flight (refs/claims/t1 exists): "
                           "its file cannot change")
    person.commit({"tasks/t1.yaml": None})
    refused(person.push(), "only a fold may remove its file")
    person.commit({"tasks/t2.yaml": task_yaml("t2")})
    accepted(person.push())
    person.commit({"tasks/t2.yaml": None}, "withdraw t2, never claimed")
    accepted(person.push())


def test_an_agent_writing_main_without_a_fold_is_refused(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, held = claimed(state, tmp_path, person)
    assert client.finish(held, result(held, "agent-a"))
    base = archive_path("t1")
    # Moves the task to archive/ as a fold would, but keeps the claim ref: not a fold.
    person.commit({"tasks/t1.yaml": None, f"{base}/task.yaml": task_yaml("t1"),
                   f"{base}/result.yaml": "kind: result\n"})
    refused(person.push(), f"{base}/result.yaml: archive/ is written only by fold commits",
            "tasks/t1.yaml: task 't1' is in flight")


def test_a_fold_with_a_forged_result_is_refused(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, held = claimed(state, tmp_path, person)
    assert client.finish(held, result(held, "agent-a", "failed"))
    tip = list_refs(["refs/claims/t1"], git_dir=state)["refs/claims/t1"]
    base = archive_path("t1")
    forged = result(held, "agent-a").to_yaml().decode()
    sha = person.commit({"tasks/t1.yaml": None, f"{base}/task.yaml": task_yaml("t1"),
                         f"{base}/result.yaml": forged})
    git(["fetch", "--quiet", "origin", f"{tip}"], person.work)
    refused(person.push("--atomic", f"--force-with-lease=refs/claims/t1:{tip}",
                        f"{sha}:refs/heads/main", ":refs/claims/t1"),
            f"{base}/result.yaml: does not match the result at refs/claims/t1")
    assert client.fold(client.snapshot(), 10) == 1  # the agents' own fold is accepted


def test_non_fast_forward_main_is_refused(person: Person) -> None:
    first = person.commit({"tasks/t1.yaml": task_yaml("t1")})
    accepted(person.push())
    person.commit({"tasks/t2.yaml": task_yaml("t2")})
    accepted(person.push())
    refused(person.push(f"+{first}:refs/heads/main"), "refs/heads/main: not a fast-forward")
    refused(person.push(":refs/heads/main"), "refs/heads/main: main cannot be deleted")


def test_other_ref_namespaces_are_refused(person: Person) -> None:
    person.commit({"tasks/t1.yaml": task_yaml("t1")})
    refused(person.push("HEAD:refs/heads/feature", "HEAD:refs/tags/v1"),
            "refs/heads/feature: only refs/heads/main, refs/claims/<key> and refs/agents/<id>",
            "refs/tags/v1: only")


# -- claim and agent refs -------------------------------------------------------------------


def test_result_not_on_a_live_claim_is_refused(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, held = claimed(state, tmp_path, person)
    store = person.store
    git(["fetch", "--quiet", "origin", "+refs/claims/*:refs/claims/*"], person.work)
    orphan = record_commit(store, result(held, "agent-a"), ())
    refused(person.push(f"+{orphan}:refs/claims/t1"),
            "refs/claims/t1", "must sit on the ref's current tip")
    other = record_commit(store, result(held, "agent-b"), (held.tip,))
    refused(person.push(f"{other}:refs/claims/t1"),
            "a result must sit on a live claim by the same agent and attempt (agent-b, "
            "attempt 1); the tip is a claim by agent-a")
    release_first = record_commit(store, result(held, "agent-a", "succeeded"), ())
    refused(person.push(f"{release_first}:refs/claims/t9"), "field 'task': 't1' is not this "
                                                            "ref's task 't9'")
    own = record_commit(store, result(held, "agent-a"), (held.tip,))
    accepted(person.push(f"{own}:refs/claims/t1"))
    store.close()
    client.close()


def test_claim_naming_another_task_and_renewals(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, held = claimed(state, tmp_path, person)
    store = person.store
    git(["fetch", "--quiet", "origin", "+refs/claims/*:refs/claims/*"], person.work)
    person.commit({"tasks/t2.yaml": task_yaml("t2")})
    accepted(person.push())
    wrong = dataclasses.replace(held.claim, task="t1")
    sha = record_commit(store, wrong, ())
    refused(person.push(f"{sha}:refs/claims/t2"), "claim.yaml: field 'task': 't1' is not "
                                                  "this ref's task 't2'")
    thief = dataclasses.replace(held.claim, agent="agent-b")
    sha = record_commit(store, thief, ())
    refused(person.push(f"+{sha}:refs/claims/t1"), "a renewal keeps agent and attempt")
    renewed, lost, _ = client.renew([held], None, None)
    assert not lost and "t1" in renewed
    claim_ghost = dataclasses.replace(held.claim, task="t3")
    refused(person.push(f"{record_commit(store, claim_ghost, ())}:refs/claims/t3"),
            "no task 't3' under tasks/ on main")
    store.close()
    client.close()


def test_deleting_a_claim_ref_without_a_fold_is_refused(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, _ = claimed(state, tmp_path, person)
    refused(person.push(":refs/claims/t1"), "refs/claims/t1: claim refs are deleted only by "
                                            "a fold")
    assert "refs/claims/t1" in list_refs(["refs/claims"], git_dir=state)
    client.close()


def test_cancel_is_accepted_and_fences_the_holder(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, held = claimed(state, tmp_path, person)
    operator = agent(state, tmp_path, "operator")
    assert cancel(operator, "t1", "not needed").status == "cancelled"
    assert client.finish(held, result(held, "agent-a")) is False
    assert operator.fold(operator.snapshot(), 10) == 1
    person.commit({"tasks/t1.yaml": task_yaml("t1")})
    refused(person.push(), "tasks/t1.yaml: id 't1' is already used by an archived task")
    client.close()
    operator.close()


def test_heartbeat_must_name_its_own_agent(person: Person) -> None:
    now = time.time()
    beat = Heartbeat(id="agent-b", host="h", pid=1, version="0", specialties=("backend",),
                     max_tasks=1, holding=(), state="running", started_at=now, last_seen=now,
                     heartbeat_seconds=1.0)
    store = person.store
    sha = record_commit(store, beat, ())
    refused(person.push(f"{sha}:refs/agents/agent-a"),
            "agent.yaml: field 'id': 'agent-b' is not this ref's agent 'agent-a'")
    accepted(person.push(f"{sha}:refs/agents/agent-b"))
    store.close()


def test_a_claim_ref_holding_task_files_is_refused(person: Person) -> None:
    sha = person.commit({"tasks/t1.yaml": task_yaml("t1")})
    refused(person.push(f"{sha}:refs/claims/t1"),
            "the commit's tree must hold exactly one of claim.yaml, release.yaml, result.yaml")


# -- the client hook and installation -------------------------------------------------------


def test_pre_commit_hook_refuses_bad_task_files(person: Person) -> None:
    assert install(str(person.work)) == ["pre-commit"]
    (person.work / "tasks" / "t1.yaml").write_text(task_yaml("t1", colour="blue"))
    (person.work / "notes.txt").write_text("hi\n")
    git(["add", "tasks/t1.yaml", "notes.txt"], person.work)
    done = subprocess.run(["git", "commit", "-m", "bad"], cwd=person.work, capture_output=True,
                          text=True, check=False)
    assert done.returncode != 0
    assert "tasks/t1.yaml: field 'colour': unknown field" in done.stderr
    assert "notes.txt: outside tasks/, cluster.yaml and README.md" in done.stderr
    git(["rm", "-q", "--cached", "notes.txt"], person.work)
    (person.work / "tasks" / "t1.yaml").write_text(task_yaml("t1"))
    git(["add", "tasks/t1.yaml"], person.work)
    git(["commit", "-q", "-m", "good"], person.work)
    accepted(person.push())


def test_merging_main_passes_pre_commit_but_the_server_wants_a_rebase(
        person: Person, state: Path, tmp_path: Path) -> None:
    client, held = claimed(state, tmp_path, person)
    assert install(str(person.work)) == ["pre-commit"]
    (person.work / "tasks" / "t2.yaml").write_text(task_yaml("t2"))
    git(["add", "tasks/t2.yaml"], person.work)
    git(["commit", "-q", "-m", "t2, written before the fold"], person.work)
    assert client.finish(held, result(held, "agent-a"))
    assert client.fold(client.snapshot(), 10) == 1
    fold = list_refs(["refs/heads/main"], git_dir=state)["refs/heads/main"]
    git(["fetch", "--quiet", "origin"], person.work)
    git(["merge", "--quiet", "--no-ff", "--no-commit", "origin/main"], person.work)
    git(["commit", "-q", "-m", "merge main"], person.work)  # the pre-commit hook runs here
    merge = git(["rev-parse", "HEAD"], person.work).strip()
    refused(person.push(), f"refs/heads/main {merge[:12]}: a merge: main takes merges only "
                           f"from folds (parent {fold[:12]} is not a claim this push folds); "
                           "rebase onto main and push again")
    git(["rebase", "--quiet", "origin/main"], person.work)
    accepted(person.push())
    assert git(["--git-dir", str(state), "show", "main:tasks/t2.yaml"], ROOT) == task_yaml("t2")
    client.close()


def test_install_records_the_interpreter(state: Path, tmp_path: Path) -> None:
    script = render(b"#!/bin/sh\nCLUSTER_HOOK_PYTHON=python3\nexec x\n", "/opt/my venv/python")
    assert b"CLUSTER_HOOK_PYTHON='/opt/my venv/python'\n" in script
    assert install(f"file://{state}", python="/usr/bin/python3.11") == ["pre-receive"]
    text = (state / "hooks" / "pre-receive").read_text()
    assert "CLUSTER_HOOK_PYTHON=/usr/bin/python3.11" in text
    assert (state / "hooks" / "pre-receive").stat().st_mode & 0o111


# -- the whole protocol with the hooks in place ---------------------------------------------


def test_agents_run_the_protocol_without_a_refusal(
        state: Path, person: Person, tmp_path: Path, agents: object) -> None:
    log = tmp_path / "refusals.log"
    hooks = state / "hooks"
    (hooks / "pre-receive").rename(hooks / "pre-receive.real")
    (hooks / "pre-receive").write_text(
        f'#!/bin/sh\n"$(dirname "$0")/pre-receive.real" 2>>"{log}"\n')
    (hooks / "pre-receive").chmod(0o755)
    docs = {f"ok{i}": task_yaml(f"ok{i}") for i in range(4)}
    docs["flaky"] = task_yaml("flaky", command="false", max_attempts=2)
    person.commit({f"tasks/{k}.yaml": v for k, v in docs.items()})
    accepted(person.push())
    url = f"file://{state}"
    # a lease no loaded machine lets lapse: this test is about the hook's verdicts, and a lapsed
    # lease (a fenced result, a takeover) is the protocol working, not a refusal
    started = [agents(url, f"agent-{n}", max_tasks=2, lease=30)  # type: ignore[operator]
               for n in "ab"]

    def archived() -> bool:
        refs = list_refs(["refs/heads/main", "refs/claims"], git_dir=state)
        tree = git(["ls-tree", "-r", "--name-only", refs["refs/heads/main"]], state)
        return sum(name.endswith("/result.yaml") for name in tree.split()) == len(docs)

    poll(archived, 120, lambda: "every task archived; agent log:\n" + started[0].tail())
    for proc in started:
        assert proc.saw("result_fenced") is None and proc.saw("claim_lost") is None
    assert not log.exists() or log.read_text() == "", log.read_text()


def test_a_stale_lock_on_the_server_is_cleared_by_the_hook(person: Person, state: Path) -> None:
    lock = state / "refs/heads/main.lock"  # as a writer that died mid-update leaves it
    lock.write_text("1" * 40 + "\n")
    person.commit({"tasks/t1.yaml": task_yaml("t1")})
    young = person.push()
    assert young.returncode != 0 and lock.exists()  # git refuses: its writer may be alive
    then = time.time() - STALE_LOCK_SECONDS - 1
    os.utime(lock, (then, then))
    done = person.push()
    accepted(done)
    assert f"pre-receive: removed {lock}" in done.stderr and not lock.exists()
    assert git(["--git-dir", str(state), "show", "main:tasks/t1.yaml"], ROOT) == task_yaml("t1")
