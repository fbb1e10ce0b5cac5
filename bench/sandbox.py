"""What sealing costs: per process start, with and without the broker bridge, and in memory.

    python bench/sandbox.py [--starts 50] [--json]

Each start runs ``true`` through ``run_in_group`` (the one way the agent starts a task process)
unsealed, in a jail, and in a jail with the bridge to a broker socket; the figures are the
p50/p95 wall time of a start and what the jail adds (p50 sealed minus p50 unsealed). Memory:
the RSS a running broker adds to the agent process (after one request through it), and the
RSS of the jail's own processes (bwrap's two and the bridge) while a command runs inside,
and an idle agent's RSS with the sandbox on and off (the start-up check included).
The per-attempt cost on a whole task is ``bench/agent.py --sandbox both``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.claims import events, percentile  # noqa: E402
from cluster.agent.config import SandboxConfig  # noqa: E402
from cluster.agent.executors.base import Budget  # noqa: E402
from cluster.agent.process import run_in_group  # noqa: E402
from cluster.sandbox.broker import Broker, Credential  # noqa: E402
from cluster.sandbox.jail import Jail  # noqa: E402
from cluster.sandbox.sandboxes import default_sandboxes  # noqa: E402
from cluster.secret import Secret  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402


def starts(jail: Jail | None, cwd: Path, count: int) -> list[float]:
    times = []
    env = {"PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryFile() as out:
        for _ in range(count):
            began = time.perf_counter()
            done = run_in_group(["true"], cwd=cwd, env=env, timeout=30, output=out, jail=jail)
            times.append(time.perf_counter() - began)
            if not done.ok:
                raise SystemExit(f"a start failed: {done}")
    return times


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def broker_rss(work: Path) -> int:
    """KiB the agent's RSS grows by when a broker is imported, started and used once."""
    before = rss_kib(os.getpid())
    sock = Path(tempfile.mkdtemp(prefix="ccc-bench-")) / "broker.sock"
    broker = Broker("http://127.0.0.1:9", Credential("api_key", Secret("sk-ant-bench")),
                    Budget())
    broker.start(sock)
    try:
        # One request (its upstream refuses: the broker answers 502), so its threads exist.
        subprocess.run(["curl", "-s", "--unix-socket", str(sock), "-o", "/dev/null",
                        "-H", f"x-api-key: {broker.placeholder_key}", "-X", "POST",
                        "-d", "{}", "http://broker/v1/messages"], check=False, timeout=30)
        return rss_kib(os.getpid()) - before
    finally:
        broker.close()


def descendants(pid: int) -> dict[int, str]:
    """``pid`` and every process below it, with their names."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        child = int(stat.parent.name)
        parents[child], names[child] = int(fields[1]), name
    found = {pid: names.get(pid, "?")}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in found and child not in found:
                found[child] = names[child]
                grew = True
    return found


def jail_rss(jail: Jail, cwd: Path) -> int:
    """KiB of the jail's own processes (bwrap outside, its init, the bridge) while a command
    sleeps inside: the processes between the agent and the task's command."""
    proc = subprocess.Popen(jail.wrap(["sleep", "5"], cwd), env=jail.environment(
        {"PATH": "/usr/bin:/bin"}), cwd=cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tree = descendants(proc.pid)
            if "sleep" in tree.values():
                return sum(rss_kib(pid) for pid, name in tree.items() if name != "sleep")
            time.sleep(0.02)
        raise SystemExit("the jail did not start its command")
    finally:
        proc.kill()
        proc.wait()


def idle_agent_rss(work: Path, sandbox: str) -> int:
    """KiB of a real agent process, started and idle (its first heartbeat written)."""
    state = work / f"state-{sandbox}.git"
    init_state_repo(state)
    ev = work / f"{sandbox}.jsonl"
    argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state), "--id",
            f"idle-{sandbox}", "--specialty", "backend", "--runner", "repo", "--events", str(ev),
            "--workdir", str(work / "agents"), "--sandbox", sandbox, "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(e["event"] == "started" for e in events(ev)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the {sandbox} agent did not start")
            time.sleep(0.05)
        return rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        home = Path(tmp) / "agent"
        tree = home / "workspaces" / "t" / "tree"
        tree.mkdir(parents=True)
        sandboxes = default_sandboxes(home, SandboxConfig())
        jail = sandboxes.jail("t", tree)
        sock_dir = Path(tempfile.mkdtemp(prefix="ccc-bench-"))
        broker = Broker("http://127.0.0.1:9", Credential("api_key", Secret("sk-ant-bench")),
                        Budget())
        broker.start(sock_dir / "broker.sock")
        try:
            bridged = sandboxes.jail("b", tree, broker_socket=sock_dir / "broker.sock")
            assert jail is not None and bridged is not None
            open_s = starts(None, tree, count)
            sealed_s = starts(jail, tree, count)
            bridged_s = starts(bridged, tree, count)
            jail_kib, bridge_kib = jail_rss(jail, tree), jail_rss(bridged, tree)
        finally:
            broker.close()
        row: dict[str, Any] = {"starts": count}
        for name, times in (("unsealed", open_s), ("jail", sealed_s), ("bridged", bridged_s)):
            row[f"{name}_p50_ms"] = round(statistics.median(times) * 1000, 1)
            row[f"{name}_p95_ms"] = round(percentile(times, 0.95) * 1000, 1)
        row["jail_adds_p50_ms"] = round(row["jail_p50_ms"] - row["unsealed_p50_ms"], 1)
        row["bridged_adds_p50_ms"] = round(row["bridged_p50_ms"] - row["unsealed_p50_ms"], 1)
        row["broker_rss_mb"] = round(broker_rss(home) / 1024, 1)
        row["jail_processes_rss_mb"] = round(jail_kib / 1024, 1)
        row["bridged_processes_rss_mb"] = round(bridge_kib / 1024, 1)
        for mode in ("bwrap", "off"):
            row[f"idle_agent_{mode}_rss_mb"] = round(idle_agent_rss(Path(tmp), mode) / 1024, 1)
        return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    row = run(args.starts)
    print(json.dumps(row, indent=2) if args.json else " ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
