"""Health benchmark: a fleet health check of N real hosts, as a ratio to bare `ssh HOST true`.

    python bench/health.py [--hosts 10,30] [--rounds 5] [--json]

Each N in its own fresh set of hosts, in the same run (goal at 30: within 1.5x the fan-out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fanout import ssh_fanout  # noqa: E402
from cluster.health.gather import HealthSettings, check_fleet  # noqa: E402
from cluster.testhosts.bed import write_inventory  # noqa: E402
from cluster.testhosts.hosts import down, up  # noqa: E402
from cluster.testhosts.statehost import start_state_host  # noqa: E402

PREFIX = "ccc-ops-bench"
STATE_PREFIX = "ccc-ops-bench-state"


def timed_health(settings: HealthSettings) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    fleet = check_fleet(settings)
    elapsed = time.perf_counter() - started
    down_hosts = [h.name for h in fleet.hosts if h.status == "down"]
    if down_hosts:  # the point of the cap and retries: a reachable fleet never reads as down
        raise SystemExit(f"health called reachable hosts down: {fleet.verdict}")
    counts = {s: sum(1 for h in fleet.hosts if h.status == s) for s in ("healthy", "degraded")}
    return elapsed, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="10", help="host counts, comma-separated: 10,30")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the last hosts running")
    args = parser.parse_args()
    counts = [int(part) for part in args.hosts.split(",") if part.strip()]
    results = [bench(count, args.rounds, args.keep and count == counts[-1]) for count in counts]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            for key, value in result.items():
                print(f"{key:>18}: {value}")
    return 0


def bench(count: int, rounds: int, keep: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-health-") as scratch:
        base = Path(scratch)
        try:
            state = start_state_host(base / "state", STATE_PREFIX)
            hosts = up(count, PREFIX, base / "hosts", say=lambda _: None)
            write_inventory(base / "inventory", hosts, state)
            settings = HealthSettings(inventory=base / "inventory", work_dir=base / "work",
                                      root=None, state_url=state.control_url,
                                      state_ssh_command=state.control_ssh_command)
            ssh_fanout(hosts)
            timed_health(settings)  # warm-up: imports, the state mirror's first fetch
            bare: list[float] = []
            checks: list[float] = []
            counts: dict[str, int] = {}
            for _ in range(rounds):
                bare.append(ssh_fanout(hosts))
                elapsed, counts = timed_health(settings)
                checks.append(elapsed)
        finally:
            if not keep:
                down(PREFIX)
                down(STATE_PREFIX)
    return {
        "hosts": count,
        "rounds": rounds,
        "bare_ssh_median_s": round(statistics.median(bare), 3),
        "health_median_s": round(statistics.median(checks), 3),
        "ratio": round(statistics.median(checks) / statistics.median(bare), 2),
        "target_ratio": 2.0 if count <= 10 else 1.5,
        "statuses": counts,
        "note": "no agents deployed: hosts read as degraded (no unit, no heartbeat); the probe, "
                "the SSH handshakes and the state repo read are the same work",
    }


if __name__ == "__main__":
    raise SystemExit(main())
