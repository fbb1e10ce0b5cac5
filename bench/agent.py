"""Per-task overhead of the agent around its executor, on a small target repository.

    python bench/agent.py [--executor command|claude-code] [--tasks N] [--sandbox bwrap|off|both]
                          [--profile] [--json]

One real agent process (repo runner, local forge) works through --tasks tasks, one at a time,
on a small bare target repo.

``--executor command`` (the default, 30 tasks): each task's executor is a one-line command, so
what is measured is the agent's own work: claim, clone, branch, commit, verify, push, pull
request, result. Figures: claim-to-result (the attempt) and landing-to-result (plus wake-up and
claim), p50 and p95. ``--sandbox both`` runs it sealed and unsealed and reports what the jail
adds per attempt.

``--executor claude-code`` (10 tasks): each task runs the real Claude Code CLI (``claude`` on
PATH) against the project's Messages API stand-in (``FakeAnthropic`` from
``tests/fakes/anthropic_api.py``, imported from the tests, on 127.0.0.1), which the agent
reaches as it reaches any model: ``--anthropic-base-url`` and its credential broker, the CLI in
the attempt's jail holding only the broker's placeholder. The stand-in answers each task with
one Bash tool call (a one-line change) and a final text. Figures, p50 and p95: claim to CLI
start, CLI exit to published result, their sum (the agent's own overhead around the CLI; the
aim is at most 0.5 s p50), and the CLI's run time, from the ``CLI started`` / ``CLI exited``
stamps the executor writes in the attempt's log.

``--profile`` runs the agent with its steps timed (a wrapper around the named methods, in this
script only: the agent's code is unchanged) and adds each step's p50 in milliseconds
(``step_<name>_p50_ms``), in the order an attempt takes them, plus what no step accounts for.

The run is bounded: at most --task-timeout seconds per task and --deadline in all; the agent is
stopped and every temporary directory removed whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.claims import events, land, percentile  # noqa: E402
from cluster.state.client import Identity, StateClient  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402

API_KEY = "sk-ant-api03-bench-stand-in-key-0123456789"  # the stand-in's; only the broker holds it
CLI_STARTED = re.compile(r"^\[claude-code\] CLI started at ([0-9.]+)$", re.MULTILINE)
CLI_EXITED = re.compile(r"^\[claude-code\] CLI exited \(\S+\) at ([0-9.]+)", re.MULTILINE)

# Run as ``python -c PROFILER agent run ...``: the agent with its steps timed, one JSON line per
# call in $BENCH_STEPS. Names are "owner.method" of the agent's own code; a renamed method fails
# here loudly rather than silently measuring nothing.
PROFILER = r"""
import functools, json, os, sys, threading, time
from cluster.agent import forge, taskrunner, workspace
from cluster.agent.executors import claude_code, command
from cluster.sandbox import broker, sandboxes, seal
from cluster.state import client

_out = open(os.environ["BENCH_STEPS"], "a", buffering=1)
_lock = threading.Lock()

def _timed(owner, attr, name):
    fn = getattr(owner, attr)
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            line = json.dumps({"step": name, "start": start, "end": time.time()})
            with _lock:
                _out.write(line + "\n")
    setattr(owner, attr, wrapper)

for _owner, _attr, _name in [
    (taskrunner.TaskRunner, "run", "runner"),
    (taskrunner.TaskRunner, "_new_log", "new log"),
    (workspace.Workspaces, "prepare", "workspace"),
    (taskrunner.TaskRunner, "_prompt", "prompt"),
    (seal.Sealer, "_broker", "broker build"),
    (broker.Broker, "start", "broker start"),
    (sandboxes.Sandboxes, "jail", "jail build"),
    (claude_code.ClaudeCodeExecutor, "run", "executor"),
    (command.CommandExecutor, "run", "executor"),
    (workspace.Workspaces, "commit", "commit"),
    (workspace.Workspaces, "has_work", "has work"),
    (taskrunner.TaskRunner, "_verify", "verify"),
    (broker.Broker, "close", "broker close"),
    (sandboxes.Sandboxes, "remove", "jail remove"),
    (workspace.Workspaces, "push", "push"),
    (forge.LocalForge, "open_or_update_pr", "pull request"),
    (workspace.Workspace, "close", "workspace close"),
    (taskrunner.TaskRunner, "_mask_log", "mask log"),
    (workspace.Workspaces, "remove", "workspace remove"),
    (client.StateClient, "finish", "publish"),
]:
    _timed(_owner, _attr, _name)

from cluster.cli import main
sys.exit(main(sys.argv[1:]))
"""


def git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def sample_repo(work: Path) -> Path:
    src, bare = work / "sample-src", work / "sample.git"
    src.mkdir()
    git(["init", "-q", "-b", "main"], src)
    for n in range(20):  # a small repository, not an empty one
        (src / f"module_{n}.py").write_text(f"def f{n}(x):\n    return x + {n}\n" * 20)
    (src / "test_all.py").write_text("import module_1\nassert module_1.f1(1) == 2\n")
    git(["add", "."], src)
    git(["-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qm", "init"], src)
    git(["clone", "-q", "--bare", str(src), str(bare)], work)
    return bare


def task_yaml(task_id: str, repo: Path, executor: str) -> bytes:
    kind: dict[str, Any] = ({"kind": "command", "command": "echo \"$CLUSTER_TASK_ID\" >> CHANGES"}
                            if executor == "command" else {"kind": "claude-code"})
    return yaml.safe_dump({
        "id": task_id, "title": f"bench {task_id}", "specialty": "backend", "repo": str(repo),
        "executor": kind, "verify": "python3 test_all.py", "max_attempts": 1,
        "prompt": "Append this task's id to CHANGES.",
    }).encode()


def p50_p95(name: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"{name}_p50_s": round(statistics.median(values), 3),
            f"{name}_p95_s": round(percentile(values, 0.95), 3)}


def cli_stamps(log: Path) -> tuple[float, float] | None:
    """The CLI's start and exit (epoch seconds) as the executor stamped them in the log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    started, exited = CLI_STARTED.findall(text), CLI_EXITED.findall(text)
    return (float(started[-1]), float(exited[-1])) if started and exited else None


def step_profile(path: Path, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Each step's p50 (ms) over the tasks, in the order attempts take them, with "to runner"
    (the claimed event to the runner's start), "wake-up" (the runner's end to the publish) and
    "other" (the rest of the claim-to-published window that no step accounts for)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    per_step: dict[str, list[float]] = {}
    order: dict[str, float] = {}
    for start, end in windows.values():
        inside = [s for s in lines if start - 0.001 <= s["start"] and s["end"] <= end + 0.001]
        totals: dict[str, float] = {}
        for s in inside:
            order.setdefault(s["step"], s["start"] - start)
            totals[s["step"]] = totals.get(s["step"], 0.0) + s["end"] - s["start"]
        runner = next((s for s in inside if s["step"] == "runner"), None)
        publish = next((s for s in inside if s["step"] == "publish"), None)
        if runner is not None:
            order.setdefault("to runner", -1.0)
            totals["to runner"] = runner["start"] - start
            if publish is not None:
                order.setdefault("wake-up", runner["end"] - start)
                totals["wake-up"] = publish["start"] - runner["end"]
        covered = sum(took for step, took in totals.items() if step != "runner")
        order["other"], totals["other"] = float("inf"), end - start - covered
        for step, took in totals.items():
            per_step.setdefault(step, []).append(took)
    return {f"step_{step.replace(' ', '_').replace('-', '_')}_p50_ms":
            round(statistics.median(per_step[step]) * 1000)
            for step in sorted(per_step, key=lambda step: order[step]) if step != "runner"}


def result_seen(ev: Path, task_id: str) -> Callable[[], bool]:
    return lambda: any(e["event"] == "published" and e["task"] == task_id for e in events(ev))


def wait_for(what: str, done: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes],
             log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None:
            raise SystemExit(f"the agent died while waiting for {what}:\n"
                             + log.read_text()[-3000:])
        if time.monotonic() > deadline:
            raise SystemExit(f"no {what} within {timeout:g} s:\n" + log.read_text()[-3000:])
        time.sleep(0.01)


def run(tasks: int, sandbox: str = "bwrap", executor: str = "command", profile: bool = False,
        task_timeout: float = 120.0, deadline: float = 900.0) -> dict[str, Any]:
    ends = time.monotonic() + deadline
    with tempfile.TemporaryDirectory(prefix="bench-agent-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        state = work / "state.git"
        init_state_repo(state, settings=b"fold_delay_seconds: 2\n")
        target = sample_repo(work)
        ev, log_path, steps = work / "agent.jsonl", work / "agent.log", work / "steps.jsonl"
        start = ["-c", PROFILER] if profile else ["-m", "cluster"]
        argv = [sys.executable, *start, "agent", "run", "--state", str(state),
                "--id", "bench", "--specialty", "backend", "--runner", "repo",
                "--events", str(ev), "--workdir", str(work / "agents"),
                "--pull-request-dir", str(work / "prs"), "--log-level", "WARNING",
                "--allow-local-repos", "--sandbox", sandbox]
        env = {k: v for k, v in os.environ.items()
               if k not in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL")}
        env["BENCH_STEPS"] = str(steps)
        api = None
        if executor == "claude-code":
            from tests.fakes.anthropic_api import FakeAnthropic

            api = FakeAnthropic(api_key=API_KEY).start()
            env["ANTHROPIC_API_KEY"] = API_KEY  # the agent's, as systemd gives it
            argv += ["--executors", "claude-code", "--anthropic-base-url", api.url]
        try:
            with log_path.open("wb") as log:
                proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
            try:
                client = StateClient(str(state), work / "submitter", Identity("bench"))
                wait_for("start", lambda: any(e["event"] == "started" for e in events(ev)),
                         60, proc, log_path)
                landed: dict[str, float] = {}
                for n in range(tasks):  # one at a time: the agent's own overhead, not a queue
                    task_id = f"b{n:03d}"
                    if api is not None:
                        change = f"echo {task_id} >> CHANGES"
                        api.reply_tool_use(("Bash", {"command": change,
                                                     "description": "Append the task id"}))
                        api.reply_text(f"Appended {task_id} to CHANGES.")
                    landed[task_id] = land(client, [task_id],
                                           lambda t: task_yaml(t, target, executor))
                    left = min(task_timeout, ends - time.monotonic())
                    wait_for(f"result of {task_id}", result_seen(ev, task_id), left, proc,
                             log_path)
                    if api is not None and api.pending:
                        raise SystemExit(f"{task_id}: the CLI asked for {api.pending} fewer "
                                         "replies than scripted:\n" + log_path.read_text())
                client.close()
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if api is not None and api.errors:
                raise SystemExit("the stand-in crashed:\n" + "\n".join(api.errors))
            return figures(work, ev, steps, landed, sandbox, executor, profile,
                           requests=len(api.requests) if api is not None else None)
        finally:
            if api is not None:
                api.stop()


def figures(work: Path, ev: Path, steps: Path, landed: dict[str, float], sandbox: str,
            executor: str, profile: bool, requests: int | None) -> dict[str, Any]:
    claimed = {e["task"]: e["ts"] for e in events(ev) if e["event"] == "claimed"}
    published = {e["task"]: (e["ts"], e["status"]) for e in events(ev)
                 if e["event"] == "published"}
    attempt = [published[t][0] - claimed[t] for t in published]
    total = [published[t][0] - landed[t] for t in published]
    ok = sum(1 for _, status in published.values() if status == "succeeded")
    row: dict[str, Any] = {"executor": executor, "sandbox": sandbox, "tasks": len(landed),
                           "succeeded": ok}
    if executor == "claude-code":
        before, after, cli = [], [], []
        for task in published:
            logs = sorted((work / "agents" / "bench" / "logs").glob(f"{task}-a*.log"))
            stamps = cli_stamps(logs[-1]) if logs else None
            if stamps is None:
                continue
            before.append(stamps[0] - claimed[task])
            after.append(published[task][0] - stamps[1])
            cli.append(stamps[1] - stamps[0])
        row.update(p50_p95("claim_to_cli_start", before))
        row.update(p50_p95("cli_exit_to_published", after))
        row.update(p50_p95("overhead", [b + a for b, a in zip(before, after, strict=True)]))
        row.update(p50_p95("cli_run", cli))
        row["model_requests"] = requests
    row.update(p50_p95("attempt", attempt))
    row.update(p50_p95("landing_to_result", total))
    row["pull_requests"] = len(list((work / "prs").rglob("*.json")))
    if profile:
        row.update(step_profile(steps, {t: (claimed[t], published[t][0]) for t in published}))
    return row


def load_note() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=("command", "claude-code"), default="command")
    parser.add_argument("--tasks", type=int, help="default: 30 (command), 10 (claude-code)")
    parser.add_argument("--sandbox", choices=("bwrap", "off", "both"), default="bwrap")
    parser.add_argument("--profile", action="store_true", help="time the agent's steps too")
    parser.add_argument("--task-timeout", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--deadline", type=float, default=900.0, metavar="SECONDS",
                        help="for each configuration's whole run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tasks = args.tasks or (10 if args.executor == "claude-code" else 30)
    modes = ("bwrap", "off") if args.sandbox == "both" else (args.sandbox,)
    if args.executor == "claude-code" and "off" in modes and os.geteuid() == 0:
        parser.error("as root the CLI runs only sealed (it refuses bypassPermissions to root): "
                     "use --sandbox bwrap, or run the bench as a non-root user")
    rows = []
    for mode in modes:
        before = load_note()
        row = run(tasks, mode, args.executor, args.profile, args.task_timeout, args.deadline)
        row["load"] = f"{before} before, {load_note()} after"
        rows.append(row)
    if len(rows) == 2:
        rows.append({"sandbox": "added", **{
            key: round(rows[0][key] - rows[1][key], 3) for key in rows[0]
            if key.endswith(("_s", "_ms")) and key in rows[1]}})
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
    for row in rows if not args.json else ():
        print(" ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
