"""What reading main's history costs a reader (an id runs once: cluster.state.history).

    python bench/history.py [--tasks 1000] [--batch 64] [--json]

Builds a state repo on a local path with --tasks tasks claimed, finished and folded by the
project's own client, --batch per fold, then measures, each --repeat times:

- cold: a fresh reader's first snapshot (reads the whole log: the folds for the ledger, the
  task additions for the claim order), as an agent, `status` or `check` pays once at start;
- warm: a snapshot of an unchanged main (no git log at all);
- one fold later: the snapshot after one more fold (reads only the commits main gained).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.state.client import Held, Identity, StateClient  # noqa: E402
from cluster.state.gitcmd import RefUpdate  # noqa: E402
from cluster.state.gitobj import TreeEditor  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402
from cluster.state.records import Result  # noqa: E402


def task_yaml(task_id: str) -> bytes:
    return yaml.safe_dump({"id": task_id, "title": task_id, "specialty": "backend",
                           "repo": "bench/none", "executor": {"kind": "command",
                                                              "command": "true"}}).encode()


def submit(client: StateClient, ids: list[str]) -> None:
    snap = client.snapshot()
    assert snap.main is not None
    store = client.remote.store
    editor = TreeEditor(store, store.commit(snap.main).tree)
    for task_id in ids:
        editor.put(f"tasks/{task_id}.yaml", store.write_blob(task_yaml(task_id)))
    commit = store.write_commit(editor.write(), (snap.main,), "bench <b@b>", int(time.time()),
                                f"add {len(ids)} tasks")
    assert client.remote.push([RefUpdate("refs/heads/main", commit, snap.main)]).ok


def run_and_fold(client: StateClient, ids: list[str]) -> None:
    submit(client, ids)
    for task_id in ids:
        snap = client.snapshot()
        held = client.claim(snap, snap.tasks[task_id], 600)
        assert isinstance(held, Held)
        assert client.finish(held, Result(task=task_id, status="succeeded", attempt=1,
                                          agent="bench"))
    assert client.fold(client.snapshot(), len(ids)) == len(ids)


def timed(action: Any) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccc-bench-history-") as tmp:
        base = Path(tmp)
        repo = base / "state.git"
        init_state_repo(repo, settings=b"fold_batch: 500\n")
        writer = StateClient(str(repo), base / "writer", Identity("bench"))
        build = time.perf_counter()
        done = 0
        while done < args.tasks:
            ids = [f"t{n:06d}" for n in range(done, min(args.tasks, done + args.batch))]
            run_and_fold(writer, ids)
            done += len(ids)
        build_s = time.perf_counter() - build
        cold, warm, after = [], [], []
        for round_ in range(args.repeat):
            reader = StateClient(str(repo), base / f"reader{round_}", Identity("reader"))
            cold.append(timed(reader.snapshot))
            assert len(reader.snapshot().folded) == done + round_
            warm.append(timed(reader.snapshot))
            run_and_fold(writer, [f"x{round_:03d}"])
            after.append(timed(reader.snapshot))
            reader.close()
        writer.close()
    figures = {
        "tasks": args.tasks, "build_s": round(build_s, 1),
        "cold_ms_p50": round(statistics.median(cold), 1), "cold_ms_max": round(max(cold), 1),
        "warm_ms_p50": round(statistics.median(warm), 2),
        "one_fold_later_ms_p50": round(statistics.median(after), 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{args.tasks} folded tasks (built in {figures['build_s']} s)")
        print(f"  cold snapshot      p50 {figures['cold_ms_p50']} ms, "
              f"max {figures['cold_ms_max']} ms")
        print(f"  warm snapshot      p50 {figures['warm_ms_p50']} ms")
        print(f"  after one fold     p50 {figures['one_fold_later_ms_p50']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
