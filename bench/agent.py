"""Per-task overhead of the agent without the model, on a small target repository.

    python bench/agent.py [--tasks 30] [--sandbox bwrap|off|both] [--json]

One real agent process (repo runner, local forge) works through --tasks tasks on a small
bare target repo. Each task's executor is a one-line command, so what is measured is the
agent's own work: claim, clone, branch, commit, verify, push, pull request, result. Figures:
claim-to-result (the attempt) and landing-to-result (plus wake-up and claim), p50 and p95.
``--sandbox both`` runs it sealed and unsealed and reports what the jail adds per attempt.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.claims import events, land, percentile  # noqa: E402
from cluster.state.client import Identity, StateClient  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402


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


def task_yaml(task_id: str, repo: Path) -> bytes:
    return yaml.safe_dump({
        "id": task_id, "title": f"bench {task_id}", "specialty": "backend", "repo": str(repo),
        "executor": {"kind": "command", "command": "echo \"$CLUSTER_TASK_ID\" >> CHANGES"},
        "verify": "python3 test_all.py",
    }).encode()


def run(tasks: int, sandbox: str = "bwrap") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-agent-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        state = work / "state.git"
        init_state_repo(state, settings=b"fold_delay_seconds: 2\n")
        target = sample_repo(work)
        ev = work / "agent.jsonl"
        argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state),
                "--id", "bench", "--specialty", "backend", "--runner", "repo",
                "--events", str(ev), "--workdir", str(work / "agents"),
                "--pull-request-dir", str(work / "prs"), "--log-level", "WARNING",
                "--allow-local-repos", "--sandbox", sandbox]
        with (work / "agent.log").open("wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            client = StateClient(str(state), work / "submitter", Identity("bench"))
            deadline = time.monotonic() + 60
            while not any(e["event"] == "started" for e in events(ev)):
                if time.monotonic() > deadline:
                    raise SystemExit("the agent did not start: " + (work / "agent.log").read_text())
                time.sleep(0.05)
            landed: dict[str, float] = {}
            for n in range(tasks):  # one at a time: the agent's own overhead, not a queue
                task_id = f"b{n:03d}"
                landed[task_id] = land(client, [task_id], lambda t: task_yaml(t, target))
                while not any(e["event"] == "published" and e["task"] == task_id
                              for e in events(ev)):
                    if proc.poll() is not None:
                        raise SystemExit("the agent died: " + (work / "agent.log").read_text())
                    time.sleep(0.01)
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        claimed = {e["task"]: e["ts"] for e in events(ev) if e["event"] == "claimed"}
        published = {e["task"]: (e["ts"], e["status"]) for e in events(ev)
                     if e["event"] == "published"}
        attempt = [published[t][0] - claimed[t] for t in published]
        total = [published[t][0] - landed[t] for t in published]
        ok = sum(1 for _, status in published.values() if status == "succeeded")
        return {
            "sandbox": sandbox, "tasks": tasks, "succeeded": ok,
            "attempt_p50_s": round(statistics.median(attempt), 3),
            "attempt_p95_s": round(percentile(attempt, 0.95), 3),
            "landing_to_result_p50_s": round(statistics.median(total), 3),
            "landing_to_result_p95_s": round(percentile(total, 0.95), 3),
            "pull_requests": len(list((work / "prs").rglob("*.json"))),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--sandbox", choices=("bwrap", "off", "both"), default="bwrap")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = ("bwrap", "off") if args.sandbox == "both" else (args.sandbox,)
    rows = [run(args.tasks, mode) for mode in modes]
    if len(rows) == 2:
        rows.append({"sandbox": "added", **{
            key: round(rows[0][key] - rows[1][key], 3) for key in rows[0]
            if key.endswith("_s")}})
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
    for row in rows if not args.json else ():
        print(" ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
