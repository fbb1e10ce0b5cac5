"""The pre-receive hook on claim and agent refs: judged without the task schema's import graph
(pydantic), by the same rules as with everything imported.

Each case's verdict is taken twice: from a fresh hook process as the server runs it (only what
claim and agent refs need gets imported) and from ``judge`` in a process that has main's rules,
the task schema and pydantic loaded. Both must print the same problems, line for line.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cluster.hooks import mainref
from cluster.hooks.receive import judge
from cluster.state.gitcmd import RefUpdate
from cluster.state.gitobj import ObjectStore, TreeEditor
from cluster.state.init import init_state_repo
from cluster.state.localrefs import update_refs
from cluster.state.records import Claim, Heartbeat, Record, Release, Result
from cluster.state.schema import one_line
from tests.helpers import ROOT, task_doc

ZERO = "0" * 40
IDENT = "Agent <agent@example.invalid>"


@dataclasses.dataclass
class Repo:
    path: Path
    store: ObjectStore
    blob: str  # t1's task blob
    held: str  # the claim commit refs/claims/t2 holds (agent-a, attempt 1)

    def commit(self, name: str, data: bytes, parents: tuple[str, ...] = ()) -> str:
        tree = self.store.single_file_tree(name, data)
        return self.store.write_commit(tree, parents, IDENT, int(time.time()), "write")

    def record(self, record: Record, parents: tuple[str, ...] = ()) -> str:
        return self.commit(record.FILE, record.to_yaml(), parents)


def claim(task: str, blob: str, agent: str = "agent-a", **extra: object) -> Claim:
    now = time.time()
    fields: dict[str, object] = dict(
        task=task, agent=agent, host="h", pid=1, attempt=1, claimed_at=now, renewed_at=now,
        expires_at=now + 30, lease_seconds=30.0, task_blob=blob, takeover_of=None)
    fields.update(extra)
    return Claim(**fields)  # type: ignore[arg-type]


def heartbeat(agent: str) -> Heartbeat:
    now = time.time()
    return Heartbeat(id=agent, host="h", pid=1, version="0", specialties=("backend",),
                     max_tasks=1, holding=(), state="running", started_at=now, last_seen=now,
                     heartbeat_seconds=5.0)


def build_repo(path: Path) -> Repo:
    """A state repo at ``path`` with its hooks, tasks t1 and t2 on main, t2 claimed by
    agent-a; close its ``store`` when done."""
    init_state_repo(path, settings=b"fold_delay_seconds: 0.2\n", hooks=ROOT / "hooks")
    store = ObjectStore(path)
    main = (path / "refs" / "heads" / "main").read_text().strip()
    editor = TreeEditor(store, store.commit(main).tree)
    blobs = {}
    for task in ("t1", "t2"):
        blobs[task] = store.write_blob(yaml.safe_dump(task_doc(task)).encode())
        editor.put(f"tasks/{task}.yaml", blobs[task])
    tip = store.write_commit(editor.write(), (main,), IDENT, int(time.time()), "tasks")
    held = Repo(path, store, blobs["t1"], "").record(claim("t2", blobs["t2"]))
    report = update_refs(path, [RefUpdate("refs/heads/main", tip, main),
                                RefUpdate("refs/claims/t2", held, None)], atomic=True)
    assert report.ok
    return Repo(path, store, blobs["t1"], held)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    built = build_repo(tmp_path / "state.git")
    yield built
    built.store.close()


# name -> (the pre-receive line(s) for the push, accepted?)
Case = Callable[[Repo], tuple[list[str], bool]]


def line(ref: str, old: str | None, new: str | None) -> str:
    return f"{old or ZERO} {new or ZERO} {ref}"


CASES: dict[str, Case] = {
    "first claim": lambda r: (
        [line("refs/claims/t1", None, r.record(claim("t1", r.blob)))], True),
    "claim of a task not on main": lambda r: (
        [line("refs/claims/t9", None, r.record(claim("t9", r.blob)))], False),
    "claim naming another task": lambda r: (
        [line("refs/claims/t1", None, r.record(claim("t2", r.blob)))], False),
    "new claim ref with a parent": lambda r: (
        [line("refs/claims/t1", None, r.record(claim("t1", r.blob), (r.held,)))], False),
    "unsafe key": lambda r: (
        [line("refs/claims/-x", None, r.record(claim("-x", r.blob)))], False),
    "unsafe agent": lambda r: (
        [line("refs/claims/t1", None, r.record(claim("t1", r.blob, agent="a b")))], False),
    "not YAML": lambda r: (
        [line("refs/claims/t1", None, r.commit("claim.yaml", b"task: [\n"))], False),
    "an empty tree": lambda r: (
        [line("refs/claims/t1", None, r.store.write_commit(
            r.store.write_tree({}), (), IDENT, 0, "empty"))], False),
    "renewal": lambda r: (
        [line("refs/claims/t2", r.held, r.record(claim("t2", r.blob)))], True),
    "renewal by another agent": lambda r: (
        [line("refs/claims/t2", r.held, r.record(claim("t2", r.blob, agent="agent-b")))],
        False),
    "result on the holder's claim": lambda r: (
        [line("refs/claims/t2", r.held, r.record(
            Result(task="t2", status="succeeded", attempt=1, agent="agent-a"), (r.held,)))],
        True),
    "result by another agent": lambda r: (
        [line("refs/claims/t2", r.held, r.record(
            Result(task="t2", status="succeeded", attempt=1, agent="agent-b"), (r.held,)))],
        False),
    "release without a claim": lambda r: (
        [line("refs/claims/t1", None, r.record(
            Release(task="t1", status="failed", attempt=1, agent="agent-a",
                    counted=False, reason="r", not_before=0.0)))], False),
    "claim deleted without a fold": lambda r: (
        [line("refs/claims/t2", r.held, None)], False),
    "heartbeat": lambda r: (
        [line("refs/agents/agent-a", None, r.record(heartbeat("agent-a")))], True),
    "heartbeat with a parent": lambda r: (
        [line("refs/agents/agent-a", None, r.record(heartbeat("agent-a"), (r.held,)))],
        False),
    "heartbeat of another agent": lambda r: (
        [line("refs/agents/agent-a", None, r.record(heartbeat("agent-b")))], False),
    "a ref outside the protocol": lambda r: (
        [line("refs/heads/other", None, r.held)], False),
    "claim and heartbeat in one push": lambda r: (
        [line("refs/claims/t1", None, r.record(claim("t1", r.blob))),
         line("refs/agents/agent-a", None, r.record(heartbeat("agent-a")))], True),
}


def run_hook(repo: Path, lines: list[str], *flags: str) -> subprocess.CompletedProcess[str]:
    """The hook as the installed script runs it, in a fresh interpreter."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "GIT_DIR": str(repo)}
    return subprocess.run([sys.executable, *flags, "-P", "-m", "cluster.hooks", "pre-receive"],
                          cwd=repo, input="".join(f"{x}\n" for x in lines), env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_lean_and_full_imports_give_the_same_verdict(repo: Repo, name: str) -> None:
    lines, ok = CASES[name](repo)
    assert mainref.check_main is not None  # this process has main's rules imported: the full graph
    full = [one_line(problem, limit=2000) for problem in judge(repo.path, lines)]
    lean = run_hook(repo.path, lines)
    printed = [x for x in lean.stderr.splitlines() if not x.startswith("push refused")]
    assert printed == full, f"{name}: the fresh hook printed {lean.stderr!r}, judge {full!r}"
    assert (lean.returncode == 0) == (not full) == ok, f"{name}: {lean.stderr}"


def imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {part.split("|")[-1].strip() for part in stderr.splitlines()
            if part.startswith("import time:") and "|" in part}


def test_a_claim_push_imports_no_pydantic(repo: Repo) -> None:
    lines, _ = CASES["claim and heartbeat in one push"](repo)
    done = run_hook(repo.path, lines, "-X", "importtime")
    assert done.returncode == 0, done.stderr
    modules = imported(done.stderr)
    assert "cluster.hooks.claimref" in modules  # the output is what is parsed here
    heavy = {m for m in modules if m.split(".")[0] == "pydantic"
             or m in ("cluster.state.schema", "cluster.hooks.mainref", "cluster.state.snapshot")}
    assert not heavy, f"a claim-only push imported {sorted(heavy)}"


def test_a_push_to_main_imports_mains_rules(repo: Repo) -> None:
    main = (repo.path / "refs" / "heads" / "main").read_text().strip()
    editor = TreeEditor(repo.store, repo.store.commit(main).tree)
    editor.put("tasks/t3.yaml", repo.store.write_blob(yaml.safe_dump(task_doc("t3")).encode()))
    tip = repo.store.write_commit(editor.write(), (main,), IDENT, int(time.time()), "t3")
    done = run_hook(repo.path, [line("refs/heads/main", main, tip)], "-X", "importtime")
    assert done.returncode == 0, done.stderr
    assert {"pydantic", "cluster.hooks.mainref"} <= imported(done.stderr)
