"""The demo through real hosts: test hosts, a state host, `invoke deploy`, tasks to the end."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console

from cluster.cli.render import print_tables, status_tables, task_table
from cluster.demo import demo_tasks, sample_repo
from cluster.deploy.run import run
from cluster.errors import ClusterError
from cluster.state.checker import check
from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import run_git
from cluster.state.records import TERMINAL
from cluster.state.report import status, task_rows
from cluster.state.submit import submit
from cluster.testhosts import bed as testbed
from cluster.testhosts.hosts import down, up
from cluster.testhosts.statehost import StateHost, copy_repo, start_state_host

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "ccc-demo"
STATE_PREFIX = "ccc-demo-state"
FINISH_SECONDS = 600.0


def run_demo_hosts(root: Path, count: int, keep: bool = False) -> int:
    console = Console()
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=True)
    try:
        state = start_state_host(root / "state", prefix=STATE_PREFIX)
        hosts = up(count, PREFIX, root / "hosts", say=console.print)
        sample_url = _place_sample(state, root)
        use_claude = bool(os.environ.get("ANTHROPIC_API_KEY"))
        inventory = root / "inventory"
        testbed.write_inventory(inventory, hosts, state,
                                {h.name: {"specialties": ["backend", "docs"]} for h in hosts.hosts})
        agent = {"runner": "repo", "heartbeat_seconds": 2.0, "poll_seconds": 1.0,
                 "executors": ["claude", "command"] if use_claude else ["command"],
                 "allowed_repo_prefixes": [sample_url]}  # the tasks' repo, over ssh
        settings = testbed.testbed_settings(ROOT, inventory, root / "work", state, agent=agent,
                                            verify_timeout=180.0)
        outcomes = run(settings, console)  # secrets: only ANTHROPIC_API_KEY, with Claude
        if any(o.failed for o in outcomes):
            console.print("[red]deploy failed[/]: see the summary above")
            return 1
        return _work(console, state, root, sample_url, use_claude, count)
    finally:
        if not keep:
            down(PREFIX)
            down(STATE_PREFIX)
        else:
            console.print(f"hosts kept: invoke testhosts.down (prefixes {PREFIX}, {STATE_PREFIX})")


def _place_sample(state: StateHost, root: Path) -> str:
    """The sample target repo on the state host, where agents reach it over SSH."""
    with tempfile.TemporaryDirectory() as scratch:
        copy_repo(state, sample_repo(Path(scratch)), "/srv")
    del root
    return f"ssh://root@{state.record.address}/srv/sample.git"


def _work(console: Console, state: StateHost, root: Path, sample_url: str, use_claude: bool,
          count: int) -> int:
    os.environ["GIT_SSH_COMMAND"] = state.control_ssh_command  # the control host's view
    client = StateClient(state.control_url, root / "cli", Identity("demo"))
    try:
        files = []
        with tempfile.TemporaryDirectory() as scratch:
            for task in demo_tasks(Path(sample_url), use_claude):
                task["repo"] = sample_url
                path = Path(scratch) / f"{task['id']}.yaml"
                path.write_text(yaml.safe_dump(task, sort_keys=False))
                files.append(path)
            _, ids = submit(client, files)
        console.print(f"[bold]submitted[/] {', '.join(ids)} to {count} deployed agents")
        _wait(lambda: all(client.snapshot().state(i) in TERMINAL for i in ids), FINISH_SECONDS)
        snap = client.snapshot()
        print_tables([*status_tables(status(snap)), task_table(task_rows(snap))])
    finally:
        client.close()
    with tempfile.TemporaryDirectory() as scratch:
        mirror = Path(scratch) / "state.git"
        run_git(["clone", "--quiet", "--mirror", state.control_url, str(mirror)])
        summary = check(mirror).summary()
    console.print(f"[bold]history check[/] {summary}")
    ok = summary["statuses"] == {"succeeded": len(ids)} and not summary["duplicated"]
    console.print("[green]demo ok[/]" if ok else "[red]demo failed[/]")
    return 0 if ok else 1


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise ClusterError(f"the demo's tasks did not finish within {timeout:.0f}s")
        time.sleep(1.0)
