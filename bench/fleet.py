"""The state host's capacity: N simulated agents and a task stream against one state repo.

    python bench/fleet.py [--agents 16,64,256] [--heartbeat 15] [--profile default|hosted]
                          [--state-url URL | --host] [--json]

Each simulated agent is the real claim loop (cluster.agent.loop.Agent: heartbeats, claims,
renewals, results and folds through cluster.state.client.StateClient) with a runner that only
waits the task's simulated duration: no model, no workspace. A few worker processes run
many agents each, as threads; over ssh each agent has a connection of its own, as each
deployed agent host has (sshd takes 10 sessions a connection, and each session it refused
was a fresh handshake). Tasks land on main at --rate per second in small commits (as
people and intake push them). For each N it reports:

- claim latency p50/p95: from the moment a task's push was accepted to the moment an agent's
  claim push for it was (the runner starts right after);
- heartbeat lag: how much later than their interval heartbeats land, from the agents' refs
  listed every half second (p50/p95/max of gap minus interval);
- pushes by kind (the agents' claude_cluster_pushes_total), per task and per agent-hour,
  and the agents' reads of the repo by kind (claude_cluster_state_reads_total: fetch
  over ssh, files for the local repo)
  and per task, with what the reads followed per task (claude_cluster_wakeups_total: a
  told arrival, a turn, a heartbeat, a poll...),
  and with ``--profile hosted`` per idle agent-hour from an idle phase with no tasks;
- the state host's CPU: for a test host (``--host``: one started through
  cluster.testhosts.statehost and removed afterwards, serving the repo with its server hooks
  and the judge server, as a production state host does) the container's cgroup CPU (v1 or
  v2) (sshd, receive-pack, the hooks, the judge, upload-pack for the agents' reads: all of
  it); for a local repo (the
  default, a file:// URL with the server hooks installed and the judge server running beside
  it, as on a state host, the agents asking it of each write with no push
  (cluster.state.judgedwrite); ``--no-judge`` leaves it out, each write a push) the
  pre-receive hooks' own CPU, summed from a wrapper's ``times``, plus the judge server's
  (receive-pack and the agents' ref transactions are not counted);
- the history checker on the repo afterwards: duplicated, lost and stale must all be 0.

Over ssh (``--host``, ``--state-url``) the agents hear of main's moves from the state host's
watch command (cluster.state.remotewatch) unless ``--watch off``; ``--watch both`` runs each N
without it and then with it, the second row carrying its ratios to the first.

``--scale`` shrinks every interval of the hosted profile (and the tasks) by one factor, so
that an hour of idle heartbeats takes a minute: pushes per agent-hour are then per scaled hour.
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
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.beds import Bed, host_bed, own_connection, url_bed  # noqa: E402
from bench.claims import land, start_judge  # noqa: E402
from cluster.agent.config import AgentConfig, SandboxConfig  # noqa: E402
from cluster.agent.events import EventLog  # noqa: E402
from cluster.agent.loop import Agent  # noqa: E402
from cluster.agent.runner import AttemptReport  # noqa: E402
from cluster.atomicfile import write_atomic  # noqa: E402
from cluster.errors import ClusterError  # noqa: E402
from cluster.secret import Secret  # noqa: E402
from cluster.state.checker import check  # noqa: E402
from cluster.state.client import Held, Identity, StateClient  # noqa: E402
from cluster.state.gitcmd import list_refs  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402
from cluster.state.records import Outcome  # noqa: E402
from cluster.state.remotewatch import DEFAULT_COMMAND  # noqa: E402
from cluster.state.settings import HOSTED_DEFAULTS  # noqa: E402

HOOKS = ROOT / "hooks"
SIM_LABEL = "sim-seconds:"
WRAPPER = """#!/bin/bash
# bench/fleet.py: the real hook, then its CPU (children's user and system time) to cpu.log.
"$(dirname "$0")/pre-receive.real"; rc=$?
times >> "$(dirname "$0")/../cpu.log"  # two lines: the shell's, then its children's
exit $rc
"""


# -- the simulated agents (worker processes) ----------------------------------------------


class SimRunner:
    """Waits the task's simulated duration (its ``sim-seconds:`` label) and succeeds."""

    secrets: Sequence[Secret] = ()
    credentials: Mapping[str, str] = {}

    def __init__(self) -> None:
        self.claims: list[tuple[str, int, float]] = []  # key, attempt, when the run began
        self.lock = threading.Lock()

    def run(self, held: Held, cancel: threading.Event) -> AttemptReport:
        start = time.time()
        with self.lock:
            self.claims.append((held.key, held.claim.attempt, start))
        spec = held.task.spec
        labels = spec.labels if spec is not None else ()
        seconds = next((float(x[len(SIM_LABEL):]) for x in labels if x.startswith(SIM_LABEL)),
                       0.0)  # fmt: skip
        if cancel.wait(seconds):
            return AttemptReport("failed", "cancelled by the bench")
        now = time.time()
        return AttemptReport("succeeded", outcome=Outcome(started_at=start, finished_at=now,
                                                          duration_s=now - start))


def worker(spec: dict[str, Any]) -> int:
    """Run ``spec['ids']`` as agents in threads until SIGTERM; write stats every second."""
    out = Path(spec["out"])
    runner = SimRunner()
    agents: list[Agent] = []
    for agent_id in spec["ids"]:
        config = AgentConfig(
            state=spec["url"], id=agent_id, specialties=("backend",), workdir=Path(spec["work"]),
            lease_seconds=spec["lease"], heartbeat_seconds=spec["heartbeat"],
            poll_seconds=spec["poll"], state_watch_command=spec["watch"], runner="scratch",
            stop_grace_seconds=5.0,
            sandbox=SandboxConfig(mode="off"))  # fmt: skip
        # Each agent over a connection of its own (own_connection).
        sockets = Path(spec["sockets"]) / f"ssh-{agent_id}"
        env = {"GIT_SSH_COMMAND": own_connection(spec["ssh"], sockets)} if spec["ssh"] else None
        client = StateClient(config.state, config.workdir / agent_id, Identity(agent_id), env)
        agent = Agent(config, runner, EventLog(agent_id, None), client)
        agent.prepare()
        agents.append(agent)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threads = [threading.Thread(target=a.run, name=a.config.id, daemon=True) for a in agents]
    for thread in threads:
        thread.start()

    def dump() -> None:
        with runner.lock:
            claims = list(runner.claims)
        write_atomic(out, json.dumps({
            "pushes": {a.config.id: a.metrics.pushed() for a in agents},
            "reads": {a.config.id: a.metrics.read() for a in agents},
            "wakeups": {a.config.id: a.metrics.woke() for a in agents},
            "claims": claims, "counters": {a.config.id: a.counters for a in agents},
            "alive": sum(t.is_alive() for t in threads)}))

    while not done.wait(1.0):
        dump()
    for agent in agents:
        agent.stop("bench over")
    for thread in threads:
        thread.join(timeout=60)
    dump()
    return 0


# -- the bench (main process) ---------------------------------------------------------------


@dataclass
class Fleet:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def stats(self) -> list[dict[str, Any]]:
        out = []
        for _, path in self.procs:
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                out.append({"pushes": {}, "claims": [], "counters": {}, "alive": 0})
        return out

    def counts(self, what: str = "pushes",
               stats: list[dict[str, Any]] | None = None) -> dict[str, int]:
        """Every agent's ``pushes`` (or ``reads``, ``wakeups``) so far, summed by kind; from
        ``stats`` when given (one reading of the workers for several counts)."""
        total: dict[str, int] = {}
        for stat in self.stats() if stats is None else stats:
            for kinds in stat.get(what, {}).values():
                for kind, count in kinds.items():
                    total[kind] = total.get(kind, 0) + count
        return total


def settings_for(args: argparse.Namespace) -> dict[str, Any]:
    if args.profile == "hosted":
        scaled = {k: v * args.scale for k, v in HOSTED_DEFAULTS.items() if k != "renew_fraction"}
        return {"profile": "hosted", **scaled, "renew_fraction": HOSTED_DEFAULTS["renew_fraction"]}
    return {"heartbeat_seconds": float(args.heartbeat), "lease_seconds": float(args.lease),
            "fold_delay_seconds": 5.0}


@contextmanager
def local_bed(work: Path, settings: bytes, judged: bool) -> Iterator[Bed]:
    repo = work / "state.git"
    init_state_repo(repo, settings=settings, hooks=HOOKS)
    hook = repo / "hooks" / "pre-receive"
    hook.rename(hook.with_name("pre-receive.real"))
    hook.write_text(WRAPPER)
    hook.chmod(0o755)
    judge = start_judge(repo) if judged else None

    def cpu() -> float:
        log = repo / "cpu.log"
        lines = log.read_text().splitlines() if log.exists() else []
        children = (line.split() for line in lines[1::2])
        hooks = sum(_seconds(a) + _seconds(b) for a, b in children)
        return hooks + (_process_cpu(judge.pid) if judge else 0.0)

    what = "pre-receive hooks' CPU" + (" and the judge server's" if judge else "") + " (local)"
    try:
        yield Bed(f"file://{repo}", {}, repo, cpu, what, lambda dest: repo)
    finally:
        if judge is not None:
            judge.kill()
            judge.wait()


def _process_cpu(pid: int) -> float:
    """User and system CPU seconds of a running process (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds(text: str) -> float:
    minutes, _, rest = text.partition("m")
    return float(minutes) * 60 + float(rest.rstrip("s"))


def start_fleet(bed: Bed, work: Path, count: int, args: argparse.Namespace,
                settings: dict[str, Any]) -> Fleet:
    fleet = Fleet()
    procs = max(1, min(args.procs, count))
    ids = [f"sim-{n:03d}" for n in range(count)]
    hosted = args.profile == "hosted"
    heartbeat = None if hosted else float(args.heartbeat)
    lease = settings["lease_seconds"]
    for p in range(procs):
        out = work / f"worker-{p}.json"
        spec = {"ids": ids[p::procs], "url": bed.url, "work": str(work / "agents"),
                "lease": lease, "heartbeat": heartbeat, "poll": args.poll, "out": str(out),
                "watch": DEFAULT_COMMAND if args.watching else "", "ssh": bed.ssh_command,
                "sockets": str(work)}
        log = (work / f"worker-{p}.log").open("wb")
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **bed.env})  # fmt: skip
        fleet.procs.append((proc, out))
    deadline = time.monotonic() + 60 + count
    while (beating := len(heartbeats(bed))) < count:
        exited = [p.returncode for p, _ in fleet.procs if p.poll() is not None]
        if time.monotonic() > deadline or exited:
            stop_fleet(fleet)
            # The scratch directory goes with the run: the workers' last words go here.
            logs = [(work / f"worker-{n}.log").read_text(errors="replace") for n in range(procs)]
            tails = "\n".join(f"worker-{n}: ...{text[-600:]}" for n, text in enumerate(logs))
            raise SystemExit(f"{beating} of the {count} agents heartbeat within "
                             f"{60 + count} s (workers exited: {exited or 'none'})\n{tails}")
        time.sleep(0.5)
    return fleet


def stop_fleet(fleet: Fleet) -> None:
    for proc, _ in fleet.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _ in fleet.procs:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def heartbeats(bed: Bed) -> dict[str, str]:
    if bed.local is not None:
        return list_refs(["refs/agents/"], git_dir=bed.local)
    return list_refs(["refs/agents/*"], remote=bed.url, env={**os.environ, **bed.env})


class BeatWatch:
    """Lists the heartbeat refs every half second; a ref that moved is a heartbeat landed."""

    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self.seen: dict[str, tuple[str, float]] = {}
        self.gaps: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            now = time.time()
            try:
                listed = heartbeats(self.bed)
            except ClusterError:  # the host refused a connection: the next listing tells
                continue
            for ref, sha in listed.items():
                last = self.seen.get(ref)
                if last is not None and last[0] != sha:
                    self.gaps.append(now - last[1])
                if last is None or last[0] != sha:
                    self.seen[ref] = (sha, now)

    def __enter__(self) -> BeatWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def sim_task(seconds: float, timeout: int) -> Any:
    def render(task_id: str) -> bytes:
        return yaml.safe_dump({
            "id": task_id, "title": task_id, "specialty": "backend", "repo": "bench/none",
            "executor": {"kind": "command", "command": "true"}, "timeout": timeout,
            "labels": [f"{SIM_LABEL}{seconds:g}"]}).encode()
    return render


def finished(client: StateClient, keys: set[str]) -> set[str]:
    try:
        snap = client.snapshot()
    except ClusterError:  # a refused connection: the next look tells
        return set()
    return {k for k in keys if snap.result(k) is not None}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


RATIOS = ("claim_p50_s", "claim_p95_s", "claim_max_s", "heartbeat_lag_p95_s",
          "host_cpu_ms_per_push", "host_cpu_share", "reads_per_task")


def ratios(base: dict[str, Any], row: dict[str, Any]) -> dict[str, float | None]:
    """``row``'s figures over ``base``'s (the same N without the watch), where both have one."""
    return {k: round(row[k] / base[k], 3) if row.get(k) and base.get(k) else None
            for k in RATIOS}


def run_one(count: int, args: argparse.Namespace) -> dict[str, Any]:
    settings = settings_for(args)
    text = yaml.safe_dump(settings).encode()
    with tempfile.TemporaryDirectory(prefix="ccc-fleet-") as scratch:
        work = Path(scratch)
        if args.host:
            cm = host_bed(work, text)
        elif args.state_url:
            cm = url_bed(args.state_url)
        else:
            cm = local_bed(work, text, args.judge)
        with cm as bed:
            return measure(bed, work, count, args, settings)


def measure(bed: Bed, work: Path, count: int, args: argparse.Namespace,
            settings: dict[str, Any]) -> dict[str, Any]:
    hosted = args.profile == "hosted"
    scale = args.scale if hosted else 1.0
    task_seconds = args.task_seconds * (scale if hosted else 1.0)
    timeout = max(1, round(args.task_timeout * scale)) if hosted else 1800
    render = sim_task(task_seconds, timeout)
    os.environ.update(bed.env)
    bench = StateClient(bed.url, work / "bench", Identity("bench"))
    fleet = start_fleet(bed, work, count, args, settings)
    out: dict[str, Any] = {"agents": count, "profile": args.profile, "watch": args.watching,
                           "cpu_measure": bed.cpu_what}
    try:
        if hosted:  # idle phase first: no task yet, every agent only heartbeats
            time.sleep(settings["idle_heartbeat_seconds"])  # past the start-up beats
            pushes0, t0 = fleet.counts(), time.time()
            time.sleep(args.idle_seconds)
            idle = sum(fleet.counts().values()) - sum(pushes0.values())
            hours = count * (time.time() - t0) / (3600 * scale)
            out["idle_pushes_per_agent_hour"] = round(idle / hours, 2)
        landed: dict[str, float] = {}
        stats0, cpu0, t0 = fleet.stats(), bed.cpu(), time.time()
        pushes0, reads0, woke0 = (fleet.counts(w, stats0) for w in ("pushes", "reads", "wakeups"))
        with BeatWatch(bed) as watch:
            n = 0
            while time.time() - t0 < args.seconds:
                ids = [f"t{n + i:05d}" for i in range(args.batch)]
                n += args.batch
                at = land(bench, ids, render)
                landed.update(dict.fromkeys(ids, at))
                time.sleep(max(0.0, t0 + n / args.rate - time.time()))
            deadline = time.time() + max(120.0, 3 * task_seconds + settings["lease_seconds"])
            left = set(landed)
            while left and time.time() < deadline:
                left -= finished(bench, left)
                time.sleep(0.5)
            elapsed = time.time() - t0
            cpu1, stats1 = bed.cpu(), fleet.stats()
            pushes1, reads1, woke1 = (fleet.counts(w, stats1)
                                      for w in ("pushes", "reads", "wakeups"))
        busy = {k: pushes1.get(k, 0) - pushes0.get(k, 0) for k in pushes1}
        busy["submit"] = len(landed) // args.batch
        total = sum(busy.values())
        claims = {k: t for stat in fleet.stats() for k, a, t in stat["claims"] if a == 1}
        latency = [claims[k] - landed[k] for k in landed if k in claims]
        interval = settings.get("heartbeat_seconds", 15.0)
        if not hosted:
            interval = min(float(args.heartbeat), settings["lease_seconds"] / 3)
        lags = [gap - interval for gap in watch.gaps]
        out.update({
            "tasks": len(landed), "unfinished": len(left), "seconds": round(elapsed, 1),
            "claim_p50_s": pct(latency, 50), "claim_p95_s": pct(latency, 95),
            "claim_max_s": round(max(latency), 3) if latency else None,
            "heartbeat_interval_s": interval if not hosted else None,
            "heartbeat_lag_p50_s": pct(lags, 50) if not hosted else None,
            "heartbeat_lag_p95_s": pct(lags, 95) if not hosted else None,
            "heartbeat_lag_max_s": round(max(lags), 3) if lags and not hosted else None,
            "pushes": busy, "pushes_per_s": round(total / elapsed, 2),
            "reads": {k: reads1.get(k, 0) - reads0.get(k, 0) for k in reads1},
            "reads_per_task": round((sum(reads1.values()) - sum(reads0.values()))
                                    / max(1, len(landed)), 2),
            # What the agents' reads followed (cluster.agent.metrics: wakeups), per task.
            "wakeups_per_task": {k: round((n - woke0.get(k, 0)) / max(1, len(landed)), 2)
                                 for k, n in sorted(woke1.items(), key=lambda kv: -kv[1])},
            "pushes_per_task": round(total / max(1, len(landed)), 3),
            "pushes_per_agent_hour": round(total / (count * elapsed / (3600 * scale)), 1),
            "host_cpu_s": round(cpu1 - cpu0, 3),
            "host_cpu_ms_per_push": round(1000 * (cpu1 - cpu0) / max(1, total), 2),
            "host_cpu_share": round((cpu1 - cpu0) / elapsed, 3),
        })
        if out["host_cpu_share"]:
            out["agents_per_core"] = round(count / out["host_cpu_share"])
    finally:
        stop_fleet(fleet)
        bench.close()
    summary = check(bed.fetch_copy(work / "copy.git")).summary()
    out.update({k: summary[k] for k in ("done", "duplicated", "lost", "stale", "takeovers")})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--agents", default="16,64,256")
    parser.add_argument("--profile", choices=("default", "hosted"), default="default")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="default profile")
    parser.add_argument("--lease", type=float, default=60.0, help="default profile")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long tasks land")
    parser.add_argument("--rate", type=float, default=2.0, help="tasks landing per second")
    parser.add_argument("--batch", type=int, default=4, help="tasks per landing commit")
    parser.add_argument("--task-seconds", type=float, default=None,
                        help="simulated work per task (default 5; hosted: 1200 before --scale)")
    parser.add_argument("--task-timeout", type=float, default=1800.0,
                        help="hosted: the tasks' timeout before --scale (sizes the lease)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="hosted: idle phase")
    parser.add_argument("--scale", type=float, default=0.01, help="hosted: time scale")
    parser.add_argument("--poll", type=float, default=5.0, help="the agents' poll interval")
    parser.add_argument("--procs", type=int, default=4, help="worker processes")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state-url", help="an existing, fresh state repo (ssh://...)")
    where.add_argument("--host", action="store_true",
                       help="start a test host serving the state repo over SSH, remove it after")
    parser.add_argument("--no-judge", dest="judge", action="store_false",
                        help="local repo: leave out the judge server, so that every write "
                             "is a push starting the whole hook")
    parser.add_argument("--watch", choices=("on", "off", "both"), default="on",
                        help="over ssh: agents hear of main's moves from the state host's "
                             "watch command (both: each N without, then with it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.task_seconds is None:
        args.task_seconds = 1200.0 if args.profile == "hosted" else 5.0
    if args.worker:
        return worker(json.loads(args.worker))
    if args.host:
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    modes = {"on": (True,), "off": (False,), "both": (False, True)}[args.watch]
    rows: list[dict[str, Any]] = []
    for n in args.agents.split(","):
        mine = [run_one(int(n), argparse.Namespace(**{**vars(args), "watching": watching}))
                for watching in modes]  # fmt: skip
        if len(mine) == 2:
            mine[1]["ratio_to_polling"] = ratios(mine[0], mine[1])
        rows += mine
        if args.json:  # what is done so far, should a larger N not finish
            print(json.dumps(mine), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(" ".join(f"{k}={v}" for k, v in row.items()))
    clean = all(not (r["duplicated"] or r["lost"] or r["stale"] or r["unfinished"]) for r in rows)
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
