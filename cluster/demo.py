"""The local demo: a state repo, a sample repo with a failing test, agents as processes.

A task is committed to the state repo as a person would, claimed by an agent, executed (the
offline ``command`` executor, or ``claude`` when ANTHROPIC_API_KEY is set), verified, pushed
as a branch with a pull request recorded, and its result committed; a table shows the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from cluster.cli.render import print_tables, status_tables, task_table
from cluster.state.checker import check
from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import run_git
from cluster.state.init import init_state_repo
from cluster.state.report import status, task_rows

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('ok')\n"
README = "# calc\n\nA tiny library with a bug, for the Claude Code Cluster demo.\n"


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
                       {"kind": "command", "command": "sed -i 's/a - b/a + b/' calc.py"})
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


def pull_request_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="pull requests")
    for name in ("task", "branch", "record"):
        table.add_column(name)
    for row in rows:
        if row.get("pull_request"):
            table.add_row(row["id"], f"cluster/{row['id']}", row["pull_request"])
    return table


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
    codes = [proc.wait(timeout=900) for proc in start_agents(state, root, agents, use_claude)]
    client = StateClient(str(state), root / "cli", Identity("demo"))
    try:
        snap = client.snapshot()
        rows = task_rows(snap)
        print_tables([*status_tables(status(snap)), task_table(rows), pull_request_table(rows)])
    finally:
        client.close()
    summary = check(state).summary()
    console.print(f"[bold]history check[/] {summary}")
    fixed = "a + b" in git(["show", "cluster/fix-add:calc.py"], target)
    ok = not any(codes) and summary["statuses"] == {"succeeded": len(tasks)} and fixed
    console.print("[green]demo ok[/]: the branch cluster/fix-add fixes the test"
                  if ok else "[red]demo failed[/]")
    return 0 if ok else 1
