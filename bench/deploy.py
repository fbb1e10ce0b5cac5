"""Deploy benchmark: first deploy and no-op re-deploy of N real hosts, against bare ssh fan-out.

    python bench/deploy.py [--hosts 10,30] [--repeat 3] [--json]

Each N in its own fresh set of hosts, one after the other in the same run; with several N,
the ratios of each to the first (first deploy, no-op, the control host's CPU per host).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fanout import ssh_fanout  # noqa: E402
from cluster.deploy.run import run  # noqa: E402
from cluster.deploy.wheels import build_wheels  # noqa: E402
from cluster.state.init import SETTINGS as REPO_DEFAULTS  # noqa: E402
from cluster.testhosts.bed import SECRETS, freeze_source, testbed_settings, write_inventory  # noqa: E402
from cluster.testhosts.hosts import down, up  # noqa: E402
from cluster.testhosts.statehost import start_state_host  # noqa: E402

PREFIX = "ccc-bench"
# The agents' own defaults (poll every 5 s, heartbeats as the state repo says), not the test
# bed's 1 s polls and 2 s heartbeats: ten agents pushing a heartbeat every 2 s (a pre-receive
# hook each on the state host) would load the cores the deploy is measured on.
AGENT = {"runner": "scratch"}
STATE_SETTINGS = REPO_DEFAULTS  # the state repo's defaults (15 s heartbeats), not the tests' 2 s
MULTIPLEX = True  # agents keep one ssh connection to the state host (deploy's opt-in)
TIMED_CPU: list[float] = []  # the control host's CPU seconds of each timed deploy, in order


def cpu_seconds() -> float:
    """This process's and its waited-for children's user + system CPU so far: the control
    host's own share of a deploy (ssh clients, git, the wheel cache), not the hosts'."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_deploy(settings, console: Console) -> tuple[float, dict[str, int], dict[str, object]]:
    started, cpu = time.perf_counter(), cpu_seconds()
    outcomes = run(settings, console, environ=SECRETS)
    elapsed = time.perf_counter() - started
    TIMED_CPU.append(cpu_seconds() - cpu)
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("changed", "ok", "failed")}
    failed = [f"{o.host}: {o.reason}" for o in outcomes if o.failed]
    if failed:
        raise SystemExit("deploy failed:\n" + "\n".join(failed))
    return elapsed, counts, phase_figures(outcomes)


def phase_figures(outcomes) -> dict[str, object]:
    """Per phase, the median and the slowest host's seconds (hosts run their phases at once)."""
    seen: dict[str, list[float]] = {}
    for outcome in outcomes:
        for name, seconds in outcome.phases:
            seen.setdefault(name, []).append(seconds)
    return {name: {"median_s": round(statistics.median(values), 2),
                   "max_s": round(max(values), 2)} for name, values in seen.items()}


def bench(count: int, repeat: int) -> dict[str, object]:
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=True,
                   capture_output=True)
    console = Console(stderr=True, quiet=True)
    with tempfile.TemporaryDirectory(prefix="ccc-bench-") as scratch:
        base = Path(scratch)
        try:
            state = start_state_host(base / "state", prefix=f"{PREFIX}-state",
                                     settings=STATE_SETTINGS)
            hosts = up(count, PREFIX, base / "hosts", say=lambda _: None)
            write_inventory(base / "inventory", hosts, state)
            source = freeze_source(ROOT, base / "source")
            settings = testbed_settings(source, base / "inventory", ROOT / ".cluster", state,
                                        workers=max(10, count), agent=AGENT,
                                        state_ssh_multiplex=MULTIPLEX)
            started = time.perf_counter()
            wheels = build_wheels(source, settings.cache_dir)
            build_s = time.perf_counter() - started
            ssh_before = statistics.median(ssh_fanout(hosts) for _ in range(repeat))
            first_s, first, first_phases = timed_deploy(settings, console)
            first_cpu = TIMED_CPU[-1]
            noop = [timed_deploy(settings, console) for _ in range(repeat)]
            noop_cpu = statistics.median(TIMED_CPU[-repeat:])
            ssh_after = statistics.median(ssh_fanout(hosts) for _ in range(repeat))
        finally:
            down(PREFIX)
            down(f"{PREFIX}-state")
    ssh_s = statistics.median([ssh_before, ssh_after])
    noop_s = statistics.median(t for t, _, _ in noop)
    return {
        "hosts": count, "wheels": len(wheels.manifest), "wheel_build_s": round(build_s, 2),
        "ssh_fanout_s": round(ssh_s, 3), "first_deploy_s": round(first_s, 2),
        "first_deploy_ratio": round(first_s / ssh_s, 1), "first_changed": first["changed"],
        "noop_deploy_s": round(noop_s, 3), "noop_ratio": round(noop_s / ssh_s, 2),
        "noop_changed": max(c["changed"] for _, c, _ in noop),
        "first_cpu_per_host_s": round(first_cpu / count, 3),
        "noop_cpu_per_host_s": round(noop_cpu / count, 3),
        "agent": AGENT, "state_ssh_multiplex": MULTIPLEX,
        "first_phases": first_phases, "noop_phases": noop[-1][2],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="10", help="host counts, comma-separated: 10,30")
    parser.add_argument("--repeat", type=int, default=3, help="no-op deploys and ssh fan-outs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(part) for part in args.hosts.split(",") if part.strip()]
    runs = [bench(count, args.repeat) for count in counts]
    scaling = [scaled(runs[0], later) for later in runs[1:]]
    if args.json:
        print(json.dumps({"runs": runs, "scaling": scaling}))
        return 0
    for figures in runs:
        print(" ".join(f"{k}={v}" for k, v in figures.items() if not k.endswith("_phases")))
        for key in ("first_phases", "noop_phases"):
            print(key, " ".join(f"{n}={f['median_s']}/{f['max_s']}"
                                for n, f in figures[key].items()))  # type: ignore[attr-defined]
    for line in scaling:
        print(" ".join(f"{k}={v}" for k, v in line.items()))
    return 0


def scaled(base: dict[str, object], later: dict[str, object]) -> dict[str, object]:
    """``later`` against ``base`` (same run): the first deploy's growth for the hosts' growth
    (goal: no worse than linear, at most 3.0 for 3x), and the CPU per host (goal: flat)."""
    def ratio(key: str) -> float:
        return round(float(later[key]) / max(float(base[key]), 1e-9), 2)  # type: ignore[arg-type]

    return {"hosts": f"{base['hosts']}->{later['hosts']}",
            "hosts_ratio": ratio("hosts"), "first_deploy_ratio": ratio("first_deploy_s"),
            "noop_deploy_ratio": ratio("noop_deploy_s"),
            "first_cpu_per_host_ratio": ratio("first_cpu_per_host_s"),
            "noop_vs_fanout_at_n": later["noop_ratio"]}


if __name__ == "__main__":
    raise SystemExit(main())
