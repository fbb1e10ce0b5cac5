"""Chaos benchmark: real agent hosts under SIGKILL, SIGSTOP, network cuts and reboots.

Prints the history checker's table (done / duplicated / lost / stale) and the reclaim time,
from a holder's death (the SIGKILL or SIGSTOP moment) to the takeover claim of its task.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.chaos.bed import chaos_bed  # noqa: E402
from cluster.chaos.summary import figures_of  # noqa: E402
from cluster.chaos.workload import Scenario, run_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", type=int, default=12)
    parser.add_argument("--fault-seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the hosts up afterwards")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    scenario = Scenario(tasks=args.tasks, batches=args.batches, seed=args.seed,
                        fault_seconds=args.fault_seconds, faults=args.faults)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ccc-chaos-") as scratch, chaos_bed(
        Path(scratch), args.hosts, keep=args.keep
    ) as bed:
        outcome = run_scenario(bed, scenario)
    figures = figures_of(outcome)
    if args.json:
        print(json.dumps({"hosts": args.hosts, "seed": args.seed, **figures}))
    else:
        _table(args.hosts, args.seed, figures)
    clean = not (figures["duplicated"] or figures["lost"] or figures["stale"])
    return 0 if clean and figures["done"] == figures["tasks"] else 1


def _table(hosts: int, seed: int, figures: dict[str, object]) -> None:
    print(f"chaos: {hosts} hosts, seed {seed}, {figures['run_s']}s")
    print(f"{'tasks':>6} {'done':>6} {'dup':>6} {'lost':>6} {'stale':>6}")
    print(f"{figures['tasks']:>6} {figures['done']:>6} {figures['duplicated']:>6} "
          f"{figures['lost']:>6} {figures['stale']:>6}")  # fmt: skip
    for key in ("statuses", "faults", "faults_skipped", "faults_failed", "takeovers",
                "reclaims_by_kind", "fenced_events", "remote_unavailable_events"):
        print(f"{key}={figures[key]}")
    print(f"reclaim (kill/stop -> takeover claim): n={figures['reclaim_count']} "
          f"p50={figures['reclaim_p50_s']}s max={figures['reclaim_max_s']}s "
          f"lease={figures['lease_s']}s target<={figures['reclaim_target_s']}s "
          f"{'ok' if figures['reclaim_within_target'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
