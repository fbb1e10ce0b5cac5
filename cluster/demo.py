"""The local demo: a state repo, a sample repo with a failing test, agents as processes.

A task is committed to the state repo as a person would, claimed by an agent, executed (the
offline ``command`` executor, or ``claude`` when ANTHROPIC_API_KEY is set), verified, pushed
as a branch with a pull request recorded, and its result committed. Then one review round: a
reviewer requests changes on two lines of that pull request (the local forge's records),
intake's poller files the follow-up, the agents push it to the same branch and answer in both
threads and on the pull request. Tables show the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from cluster.agent.forge_local import LocalForge
from cluster.agent.pulls import Pull
from cluster.cli.render import print_tables, status_tables, task_table
from cluster.intake.followups import FollowUpPolicy, follow_up_id
from cluster.intake.poller import poll_follow_ups
from cluster.state.checker import check
from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import run_git
from cluster.state.init import init_state_repo
from cluster.state.report import status, task_rows
from cluster.state.snapshot import Snapshot

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('ok')\n"
README = "# calc\n\nA tiny library with a bug, for the Claude Code Cluster demo.\n"
BRANCH = "cluster/fix-add"
REVIEWER = "reviewer"
REVIEW = (("calc.py", 1, "add a docstring"), ("calc.py", 2, "name the result"))
# The offline stand-in for the model. A follow-up runs the command of the task it continues,
# so this one command does both jobs: it fixes the bug and, when its prompt (a follow-up's:
# the review quoted as data) carries a review comment, does what that comment asks.
FIX_COMMAND = r'''sed -i 's/a - b/a + b/' calc.py
if grep -q 'add a docstring' "$CLUSTER_PROMPT_FILE"; then
  sed -i '1a\    """Return the sum of a and b."""' calc.py
fi
if grep -q 'name the result' "$CLUSTER_PROMPT_FILE"; then
  sed -i 's/^    return a + b$/    total = a + b\n    return total/' calc.py
fi
'''


def git(args: list[str], cwd: Path) -> str:
    return run_git(args, cwd=cwd).stdout  # sealed like all our git; the commit names its author


def sample_repo(root: Path) -> Path:
    """A bare repository whose test fails until calc.add is fixed."""
    src, bare = root / "sample-src", root / "sample.git"
    src.mkdir()
    git(["init", "-q", "-b", "main"], src)
    (src / "calc.py").write_text(BUGGY)
    (src / "test_calc.py").write_text(TEST)
    (src / "README.md").write_text(README)
    git(["add", "."], src)
    git(["-c", "user.name=Demo", "-c", "user.email=demo@example.invalid", "commit", "-qm",
         "calc with a bug"], src)
    git(["clone", "-q", "--bare", str(src), str(bare)], root)
    shutil.rmtree(src)
    return bare


def demo_tasks(target: Path, use_claude: bool) -> list[dict[str, Any]]:
    fix: dict[str, Any] = {
        "id": "fix-add", "title": "Fix add() so that test_calc.py passes", "specialty": "backend",
        "priority": "high", "repo": str(target), "verify": "python3 test_calc.py",
        "prompt": "calc.add subtracts instead of adding. Fix it; test_calc.py must pass.",
    }
    fix["executor"] = ({"kind": "claude"} if use_claude else
                       {"kind": "command", "command": FIX_COMMAND})
    docs = {
        "id": "document-add", "title": "Document add() in the README", "specialty": "docs",
        "repo": str(target), "depends_on": ["fix-add"],
        "executor": {"kind": "command",
                     "command": "printf '\\n`add(a, b)` returns a + b.\\n' >> README.md"},
        "verify": "grep -q 'returns a + b' README.md",
    }
    return [fix, docs]


def submit_by_commit(state: Path, root: Path, tasks: list[dict[str, Any]]) -> None:
    """Clone the state repo, add the task files, commit and push: as a person would."""
    clone = root / "person"
    git(["clone", "-q", str(state), str(clone)], root)
    for task in tasks:
        (clone / "tasks" / f"{task['id']}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    git(["add", "tasks"], clone)
    git(["-c", "user.name=Demo Person", "-c", "user.email=person@example.invalid", "commit",
         "-qm", "Add demo tasks"], clone)
    git(["push", "-q", "origin", "HEAD:main"], clone)


def start_agents(state: Path, root: Path, count: int, use_claude: bool) -> list[Any]:
    procs = []
    executors = "claude,command" if use_claude else "command"
    for n in range(count):
        argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state),
                "--id", f"agent-{n + 1}", "--specialty", "backend,docs,testing",
                "--exit-when-idle", "--lease", "30", "--heartbeat", "2",
                "--workdir", str(root / "agents"), "--events", str(root / f"agent-{n + 1}.jsonl"),
                "--runner", "repo", "--executors", executors,
                "--pull-request-dir", str(root / "pull-requests"), "--allow-local-repos"]
        procs.append(subprocess.Popen(argv))
    return procs


def pull_request_table(snap: Snapshot, rows: list[dict[str, Any]]) -> Table:
    table = Table(title="pull requests")
    for name in ("task", "branch", "record"):
        table.add_column(name)
    for row in rows:
        result = snap.result(row["id"])
        if row.get("pull_request") and result is not None:  # a follow-up's: the one it continues
            table.add_row(row["id"], result.branch or f"cluster/{row['id']}", row["pull_request"])
    return table


@dataclass(frozen=True)
class Round:
    """The demo's review round on the fix-add pull request, as its records show it."""

    pull: Pull
    review: int
    task: str
    head_before: str
    head_after: str
    round: int | None
    threads: list[tuple[str, list[str]]]  # each line comment, and the replies in its thread
    answers: int  # the agents' comments on the pull request

    @property
    def ok(self) -> bool:
        return (self.round == 1 and self.head_after != self.head_before and self.answers >= 1
                and len(self.threads) == len(REVIEW) and all(r for _, r in self.threads))


def review(forge: LocalForge, target: Path) -> tuple[Pull, int] | None:
    """As a person would: request changes on the fix-add pull request, two line comments."""
    pull = next((p for p in forge.open_pulls(str(target)) if p.head_branch == BRANCH), None)
    if pull is None:
        return None
    review_id = forge.add_review(str(target), pull.number, REVIEWER, "CHANGES_REQUESTED",
                                 "Thanks! Two small things before this merges.", list(REVIEW))
    return pull, review_id


def review_round(forge: LocalForge, snap: Snapshot, pull: Pull, review_id: int) -> Round:
    repo, number = pull.repo, pull.number
    task = follow_up_id(repo, number, "review", review_id)
    result = snap.result(task)
    comments = forge.review_comments(repo, number)
    threads = [(f"{c.path}:{c.line} {c.body}",
                [r.body for r in comments if r.in_reply_to == c.id and r.author == forge.login])
               for c in comments if c.review_id == review_id]
    answers = sum(1 for c in forge.pull_comments(repo, number) if c.author == forge.login)
    return Round(pull, review_id, task, pull.head_sha, forge.pull(repo, number).head_sha,
                 result.round if result is not None and result.status == "succeeded" else None,
                 threads, answers)


def round_table(done: Round) -> Table:
    table = Table(title=f"review round on pull request #{done.pull.number} ({BRANCH})")
    for name in ("round", "task", "review comment", "agent's reply"):
        table.add_column(name)
    for thread, replies in done.threads:
        # The reply's first words: what it says before the executor's summary.
        reply = replies[0].strip().splitlines()[0].split(": ", 1)[0][:60] if replies else "-"
        table.add_row(str(done.round or "-"), done.task, thread, reply)
    table.caption = (f"{BRANCH}: {done.head_before[:12]} -> {done.head_after[:12]}, "
                     f"{done.answers} comment(s) by the agents on the pull request")
    return table


def run_agents(state: Path, root: Path, count: int, use_claude: bool) -> list[int]:
    return [proc.wait(timeout=900) for proc in start_agents(state, root, count, use_claude)]


def run_demo(root: Path, agents: int = 2) -> int:
    console = Console()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    state = root / "state.git"
    init_state_repo(state)
    target = sample_repo(root)
    use_claude = bool(os.environ.get("ANTHROPIC_API_KEY"))
    console.print(f"[bold]state repo[/] {state}\n[bold]target repo[/] {target} "
                  f"(test_calc.py fails)\n[bold]executor[/] "
                  f"{'claude (ANTHROPIC_API_KEY is set)' if use_claude else 'command (offline)'}")
    tasks = demo_tasks(target, use_claude)
    submit_by_commit(state, root, tasks)
    console.print(f"[bold]committed[/] {len(tasks)} tasks to the state repo")
    codes = run_agents(state, root, agents, use_claude)
    forge = LocalForge(root / "pull-requests")
    client = StateClient(str(state), root / "cli", Identity("demo"))
    try:
        reviewed = review(forge, target)
        if reviewed is not None:
            console.print(f"[bold]review[/] {REVIEWER} requests changes on pull request "
                          f"#{reviewed[0].number}: " + "; ".join(
                              f"{path}:{line} {text!r}" for path, line, text in REVIEW))
            filed = poll_follow_ups(forge, client, str(target),
                                    FollowUpPolicy(bot_login=forge.login))
            console.print(f"[bold]intake[/] {filed.summary()}")
            codes += run_agents(state, root, agents, use_claude)
        snap = client.snapshot()
        rows = task_rows(snap)
        done = review_round(forge, snap, *reviewed) if reviewed is not None else None
        tables = [*status_tables(status(snap)), task_table(rows), pull_request_table(snap, rows)]
        print_tables(tables + ([round_table(done)] if done is not None else []))
    finally:
        client.close()
    summary = check(state).summary()
    console.print(f"[bold]history check[/] {summary}")
    fixed = "a + b" in git(["show", f"{BRANCH}:calc.py"], target)
    ok = (not any(codes) and summary["statuses"] == {"succeeded": len(tasks) + 1} and fixed
          and done is not None and done.ok)
    console.print(f"[green]demo ok[/]: the branch {BRANCH} fixes the test, and one review "
                  "round changed it and answered both threads" if ok else "[red]demo failed[/]")
    return 0 if ok else 1
