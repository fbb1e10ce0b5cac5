"""Claim throughput and push-to-claim latency of N real agent processes on a local bare remote.

    python bench/claims.py [--agents 1,4,16] [--tasks 200] [--rate 25] [--remote path|file|both]
                           [--state-url ssh://host/srv/state.git | --host] [--json]

For each N: a fresh state repo with the server hooks installed, N agents (command executor,
`true`), tasks landing on the remote at --rate per second in small commits (as people and
intake push them). Latency is from the moment a task's push was accepted to the moment an
agent's claim push was accepted. A second phase (--burst) lands every task in one commit and
measures pure claim throughput.

``--remote path`` gives the agents the repo's plain path (ref transactions: no receive-pack, no
hook); ``--remote file`` a ``file://`` URL, so that every write goes under the repo's rules.
With ``--remote file`` the repo's judge server runs (``claude-cluster state judge``: the hook's
rules kept warm), as on a state host, and the agents ask it of each write before its ref
transaction (cluster.state.judgedwrite); ``--no-judge`` leaves it out, so that every write is a
push through receive-pack and the hook starting whole.
``--state-url`` adds a run against an existing state repo at that URL (say ``ssh://`` to a test
host serving the repo with its hooks: `claude-cluster state init` there): each run uses task and
agent ids of its own, and the checker reads a mirror fetched at the end, judging only the run's
tasks. ``--host`` does the same against a test host started for the run (docker: bench.beds,
the repo served as a production state host serves it, with its hooks and judge server), each
agent over an ssh connection of its own and the agents started in waves (sshd's MaxStartups).
Every row of another style carries ``ratio_to_path``: its figures over the plain-path row
of the same agent count and phase measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.beds import Bed, host_bed, own_connection, url_bed  # noqa: E402
from cluster.hooks.install import HOOKS_DIR  # noqa: E402
from cluster.hooks.judged import socket_path  # noqa: E402
from cluster.state.checker import check  # noqa: E402
from cluster.state.client import Identity, StateClient  # noqa: E402
from cluster.state.gitcmd import RefUpdate, run_git  # noqa: E402
from cluster.state.gitobj import TreeEditor  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402
from cluster.state.session import DEFAULT_COMMAND as SESSION_COMMAND  # noqa: E402
from cluster.state.session import attach  # noqa: E402

SETTINGS = b"fold_delay_seconds: 2\n"


def task_yaml(task_id: str) -> bytes:
    return yaml.safe_dump({
        "id": task_id, "title": task_id, "specialty": "backend", "repo": "bench/none",
        "executor": {"kind": "command", "command": "true"},
    }).encode()


def land(client: StateClient, ids: list[str],
         render: Callable[[str], bytes] = task_yaml) -> float:
    """Commit ``ids`` to main (retrying when agents folded meanwhile); return accept time."""
    while True:
        snap_main = client.remote.refs().get("refs/heads/main")
        store = client.remote.store
        assert snap_main is not None
        editor = TreeEditor(store, store.commit(snap_main).tree)
        for task_id in ids:
            editor.put(f"tasks/{task_id}.yaml", store.write_blob(render(task_id)))
        commit = store.write_commit(editor.write(), (snap_main,), "bench <bench@localhost>",
                                    int(time.time()), f"submit {len(ids)} task(s)")
        if client.remote.push([RefUpdate("refs/heads/main", commit, snap_main)]).ok:
            return time.time()


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# sshd refuses handshakes beyond its MaxStartups (10 at once by default): agents reaching a
# state host over ssh start in waves of this many, each wave once it has started.
SSH_WAVE = 5


def start_agents(url: str, work: Path, count: int, tag: str = "",
                 ssh_command: str | None = None) -> list[tuple[subprocess.Popen[bytes], Path]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    wave = SSH_WAVE if ssh_command else count
    for n in range(count):
        ev = work / f"agent-{n}.jsonl"
        argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", url,
                "--id", f"{tag}agent-{n}", "--specialty", "backend", "--lease", "30",
                "--heartbeat", "5", "--poll", "2", "--events", str(ev),
                "--workdir", str(work / "agents"), "--log-level", "WARNING",
                "--runner", "scratch", "--allow-local-repos"]
        env = dict(os.environ)
        if ssh_command:  # each agent over a connection of its own, as on its own host
            env["GIT_SSH_COMMAND"] = own_connection(ssh_command, work / f"ssh-{n}")
        with (work / f"agent-{n}.log").open("wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    env=env)
        procs.append((proc, ev))
        if len(procs) % wave == 0 or len(procs) == count:
            wait_started(procs, work)
    return procs


def wait_started(procs: list[tuple[subprocess.Popen[bytes], Path]], work: Path) -> None:
    deadline = time.monotonic() + 60
    while not all(any(e["event"] == "started" for e in events(ev)) for _, ev in procs):
        if time.monotonic() > deadline:
            logs = "\n".join((work / f"agent-{n}.log").read_text()[-500:]
                             for n in range(len(procs)))
            raise SystemExit(f"agents did not start within 60 s:\n{logs}")
        time.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_one(agents: int, tasks: int, rate: float, burst: bool, style: str,
            bed: Bed | None = None, judged: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-claims-", ignore_cleanup_errors=True) as scratch:
        work = Path(scratch)
        tag, env = "", None
        if bed is not None:  # a repo elsewhere, shared by the runs: each uses ids of its own
            url, repo, env = bed.url, None, bed.env
            tag = f"r{int(time.time() * 1000) % 10**9:09d}-"
        else:
            repo = work / "state.git"
            init_state_repo(repo, settings=SETTINGS, hooks=HOOKS_DIR)
            url = f"file://{repo}" if style == "file" else str(repo)
        judge = start_judge(repo) if judged and style == "file" and repo else None
        client = StateClient(url, work / "submitter", Identity("bench"), env)
        # Tasks land at the offered rate as from a long-lived intake service: over ssh its
        # session with the host (a push a landing could not keep up with 15/s).
        attach(client.remote, SESSION_COMMAND)
        procs = start_agents(url, work, agents, tag, bed.ssh_command if bed else None)
        try:
            row = measure(repo or work / "checked.git", client, procs, agents, tasks, rate,
                          burst, tag, bed)
            # A test host serves the repo with its judge server (bench.beds.host_bed).
            return {"remote": style, "judge_server": judge is not None or style == "ssh", **row}
        finally:
            for proc in [p for p, _ in procs] + ([judge] if judge else []):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def start_judge(repo: Path) -> subprocess.Popen[bytes]:
    """``claude-cluster state judge`` for ``repo``, once its socket is there."""
    proc = subprocess.Popen([sys.executable, "-m", "cluster", "state", "judge", "--repo",
                             str(repo)], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not socket_path(repo).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the judge server did not start within 30 s")
        time.sleep(0.05)
    return proc


def measure(repo: Path, client: StateClient,
            procs: list[tuple[subprocess.Popen[bytes], Path]], agents: int, tasks: int,
            rate: float, burst: bool, tag: str = "", bed: Bed | None = None) -> dict[str, Any]:
    """One phase on ``repo``; on a ``bed`` elsewhere ``repo`` is where a copy of the remote is
    fetched at the end, and only this run's ``tag``-prefixed tasks are judged."""
    landed: dict[str, float] = {}
    ids = [f"{tag}t{i:05d}" for i in range(tasks)]
    main_before = client.remote.refs().get("refs/heads/main")
    first_landing = time.time()
    if burst:
        when = land(client, ids)
        landed = dict.fromkeys(ids, when)
    else:
        per_tick = max(1, round(rate / 10))
        start = time.monotonic()
        for n in range(0, tasks, per_tick):
            target = start + n / rate
            time.sleep(max(0.0, target - time.monotonic()))
            batch = ids[n:n + per_tick]
            when = land(client, batch)
            landed.update(dict.fromkeys(batch, when))
    claimed: dict[str, float] = {}
    published: set[str] = set()
    deadline = time.monotonic() + 120 + tasks / 2
    while len(published) < tasks:
        claimed, published = {}, set()
        for _, ev in procs:
            for item in events(ev):
                if item["event"] == "claimed":
                    claimed.setdefault(item["task"], item["ts"])
                elif item["event"] == "published":
                    published.add(item["task"])
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # Let the last fold land, then stop everyone and read the history.
    drain_start = time.monotonic()
    while client.remote.refs().keys() & {f"refs/claims/{i}" for i in ids}:
        if time.monotonic() > drain_start + 60:
            break
        time.sleep(0.1)
    drained = time.monotonic() - drain_start
    for proc, _ in procs:
        proc.send_signal(signal.SIGTERM)
    rejected = 0
    for proc, ev in procs:
        proc.wait(timeout=60)
        rejected += sum(1 for e in events(ev) if e["event"] == "claim_rejected")
    if bed is not None:
        bed.fetch_copy(repo)
    client.close()
    checked = check(repo)
    if tag:  # a shared remote: judge this run's tasks only
        checked.tasks = {k: v for k, v in checked.tasks.items() if k.startswith(tag)}
    report = checked.summary()
    latencies = [claimed[t] - landed[t] for t in claimed if t in landed]
    span = max(claimed.values()) - min(landed.values()) if claimed else float("nan")
    since = [f"^{main_before}"] if tag and main_before else []
    main_commits = int(run_git(["rev-list", "--count", "main", *since], git_dir=repo).stdout)
    first_parent = int(run_git(["rev-list", "--count", "--first-parent", "main", *since],
                               git_dir=repo).stdout)
    run_git(["gc", "--quiet"], git_dir=repo)
    size_kib = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file()) / 1024
    return {
        "agents": agents, "tasks": tasks, "mode": "burst" if burst else "stream",
        "offered_rate": None if burst else rate,
        # The rate tasks did land at: below the offered one, the landing was the bottleneck.
        "landed_per_s": None if burst else round(
            tasks / max(1e-9, max(landed.values()) - first_landing), 2),
        "claims_per_s": round(len(claimed) / span, 2) if claimed else 0.0,
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "rejected_claim_pushes": rejected,
        "duplicated": report["duplicated"], "lost": report["lost"], "stale": report["stale"],
        "done": report["done"], "last_fold_after_s": round(drained, 2),
        "commits_on_main_per_task": round(main_commits / tasks, 2),
        "first_parent_commits_per_task": round(first_parent / tasks, 3),
        "repo_kib_after_gc": None if tag else round(size_kib, 1),
    }


RATIO_FIGURES = ("claims_per_s", "latency_p50_s", "latency_p95_s", "latency_max_s")


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row of another remote style gains ``ratio_to_path``: its figures over those of the
    plain-path row with the same agent count and phase (None without one)."""
    plain = {(r["agents"], r["mode"]): r for r in rows if r["remote"] == "path"}
    for row in rows:
        base = plain.get((row["agents"], row["mode"]))
        if row["remote"] == "path" or base is None:
            continue
        row["ratio_to_path"] = {
            name: round(row[name] / base[name], 2) if row[name] and base[name] else None
            for name in RATIO_FIGURES
        }
    return rows


def run_styles(styles: tuple[str, ...], args: argparse.Namespace,
               bed: Bed | None = None) -> list[dict[str, Any]]:
    rows = []
    for style in styles:
        for count in (int(part) for part in args.agents.split(",")):
            for burst in (False, True) if args.burst else (False,):
                rows.append(run_one(count, args.tasks, args.rate, burst, style, bed, args.judge))
                if not args.json:
                    print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1,4,16", help="comma-separated agent counts")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rate", type=float, default=15.0, help="tasks landing per second")
    parser.add_argument("--remote", choices=("path", "file", "both"), default="both",
                        help="plain path (ref transactions) or file:// URL (writes under "
                             "its rules: the judge asked, else a push to the hook)")
    elsewhere = parser.add_mutually_exclusive_group()
    elsewhere.add_argument("--state-url", help="also run against this existing state repo "
                           "(ssh://host/path: a host serving it with its hooks)")
    elsewhere.add_argument("--host", action="store_true",
                           help="also run against a test host started for the bench (docker), "
                                "serving the repo over SSH with its hooks and judge server")
    parser.add_argument("--no-judge", dest="judge", action="store_false",
                        help="file://: leave out the judge server (`claude-cluster state "
                             "judge`), so that every push starts the whole hook")
    parser.add_argument("--no-burst", dest="burst", action="store_false",
                        help="skip the one-commit phase that measures saturated throughput")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    styles = ("path", "file") if args.remote == "both" else (args.remote,)
    with ExitStack() as stack:
        rows = run_styles(styles, args)
        if args.state_url or args.host:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-host-")))
            bed = stack.enter_context(host_bed(scratch, SETTINGS, "ccc-claims-state")
                                      if args.host else url_bed(args.state_url))
            rows += run_styles(("ssh" if args.host else "url",), args, bed)
    with_ratios(rows)
    if not args.json:
        for row in rows:
            if "ratio_to_path" in row:
                ratios = " ".join(f"{k}={v}" for k, v in row["ratio_to_path"].items())
                print(f"ratio to path: remote={row['remote']} agents={row['agents']} "
                      f"mode={row['mode']} {ratios}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
