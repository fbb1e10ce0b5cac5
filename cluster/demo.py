"""The local demo: a state repo, agents as local processes, tasks claimed and finished."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console

from cluster.cli.render import print_tables, status_tables
from cluster.state.checker import check
from cluster.state.client import Identity, StateClient
from cluster.state.init import init_state_repo
from cluster.state.report import status
from cluster.state.submit import submit

SPECIALTIES = ("backend", "frontend", "testing")


def _task(i: int) -> dict[str, object]:
    specialty = SPECIALTIES[i % len(SPECIALTIES)]
    return {
        "id": f"demo-{i:03d}", "title": f"Demo task {i}", "specialty": specialty,
        "priority": ("low", "medium", "high", "critical")[i % 4], "repo": "demo/sample",
        "executor": {"kind": "command", "command": f"echo 'task {i} done by' $HOSTNAME"},
        "verify": "true",
    }


def run_demo(root: Path, agents: int = 2, tasks: int = 6) -> int:
    console = Console()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    state = root / "state.git"
    init_state_repo(state)
    console.print(f"[bold]state repo[/] {state}")
    with tempfile.TemporaryDirectory() as scratch:
        files = []
        for i in range(tasks):
            path = Path(scratch) / f"demo-{i:03d}.yaml"
            path.write_text(yaml.safe_dump(_task(i)))
            files.append(path)
        client = StateClient(str(state), root / "cli", Identity("demo"))
        commit, ids = submit(client, files)
        client.close()
    console.print(f"[bold]submitted[/] {len(ids)} tasks in {commit[:12]}")
    procs = []
    for n in range(agents):
        argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state),
                "--id", f"agent-{n + 1}", "--specialty", ",".join(SPECIALTIES),
                "--exit-when-idle", "--lease", "30", "--heartbeat", "2",
                "--workdir", str(root / "agents"), "--events", str(root / f"agent-{n + 1}.jsonl"),
                "--runner", "scratch"]
        procs.append(subprocess.Popen(argv))
    codes = [proc.wait(timeout=600) for proc in procs]
    client = StateClient(str(state), root / "cli", Identity("demo"))
    try:
        print_tables(status_tables(status(client.snapshot())))
    finally:
        client.close()
    summary = check(state).summary()
    console.print(f"[bold]history check[/] {summary}")
    ok = not any(codes) and summary["done"] == tasks and not summary["duplicated"]
    console.print("[green]demo ok[/]" if ok else "[red]demo failed[/]")
    return 0 if ok else 1
