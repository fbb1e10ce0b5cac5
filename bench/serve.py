"""What ``claude-cluster serve`` costs per answer, with a fleet's worth of state in the repo.

    python bench/serve.py [--tasks 1000] [--agents 64] [--requests 200] [--json]

A state repo is written with git plumbing (one commit with every task file and archive entry,
one ref transaction for the claim and heartbeat refs): tasks in mixed states (pending,
claimed, stale, released, finished on their claim ref, archived) and agent heartbeats in mixed
states. A real server on 127.0.0.1 then answers a page refresh (the page, its assets and the
three API answers it renders, one after another), /api/cluster/status and /api/tasks: p50 and
p95 over --requests each, cold (every answer re-reads the refs and recomputes) and warm (as
`serve` runs: a thread re-reads every 2 s, answers come from its reading).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.serve.app import STATIC, App  # noqa: E402
from cluster.serve.auth import Gate  # noqa: E402
from cluster.serve.server import ServeServer  # noqa: E402
from cluster.serve.state import Fleet  # noqa: E402
from cluster.state.client import Identity, StateClient  # noqa: E402
from cluster.state.gitcmd import RefUpdate  # noqa: E402
from cluster.state.gitobj import ObjectStore, TreeEditor  # noqa: E402
from cluster.state.ids import agent_ref, archive_path, claim_ref  # noqa: E402
from cluster.state.init import init_state_repo  # noqa: E402
from cluster.state.records import (  # noqa: E402
    Claim,
    Heartbeat,
    Outcome,
    Record,
    Release,
    Result,
)

SPECIALTIES = ("backend", "frontend", "testing", "devops", "docs")
AGENT_STATES = ("running", "running", "running", "paused", "draining", "blocked", "stopped")


def task_yaml(task_id: str, n: int) -> bytes:
    return yaml.safe_dump({
        "id": task_id, "title": f"bench task {n}", "specialty": SPECIALTIES[n % 5],
        "repo": "bench/none", "labels": [f"batch-{n % 3}"],
        "executor": {"kind": "command", "command": "true"},
    }).encode()


def _commit(store: ObjectStore, record: Record, parents: tuple[str, ...], when: int) -> str:
    tree = store.single_file_tree(record.FILE, record.to_yaml())
    return store.write_commit(tree, parents, "bench <bench@localhost>", when, record.KIND)


def build_fleet(repo: Path, tasks: int, agents: int, now: float | None = None) -> dict[str, int]:
    """Write ``tasks`` tasks in mixed states and ``agents`` heartbeats into a new state repo
    at ``repo``; return how many tasks each kind of writing made."""
    now = time.time() if now is None else now
    init_state_repo(repo)
    client = StateClient(str(repo), repo.parent / "bench-writer", Identity("bench"))
    store = client.remote.store
    main = client.remote.refs()["refs/heads/main"]
    editor = TreeEditor(store, store.commit(main).tree)
    refs: list[RefUpdate] = []
    made: dict[str, int] = {}
    for n in range(tasks):
        key = f"t{n:05d}"
        kind = ("pending", "pending", "pending", "claimed", "stale", "released", "archived",
                "archived", "archived", "finished")[n % 10]
        made[kind] = made.get(kind, 0) + 1
        blob = store.write_blob(task_yaml(key, n))
        agent = f"agent-{n % agents:02d}"
        claim = Claim(task=key, agent=agent, host="bench", pid=n, attempt=1,
                      claimed_at=now - 600, renewed_at=now - 5,
                      expires_at=now - 120 if kind == "stale" else now + 300,
                      lease_seconds=300, task_blob=blob)
        outcome = Outcome(cost_usd=0.01, input_tokens=1000, output_tokens=200,
                          started_at=now - 600, finished_at=now - 60, duration_s=540.0,
                          pull_request=f"https://example.invalid/pr/{n}")
        result = Result(task=key, status="succeeded" if n % 4 else "failed", attempt=1,
                        agent=agent).carrying(outcome)
        if kind == "archived":
            editor.put(f"{archive_path(key)}/task.yaml", blob)
            editor.put(f"{archive_path(key)}/result.yaml", store.write_blob(result.to_yaml()))
            continue
        editor.put(f"tasks/{key}.yaml", blob)
        if kind == "pending":
            continue
        tip = _commit(store, claim, (), int(now - 600))
        if kind == "released":
            release = Release(task=key, agent=agent, attempt=1, status="failed", counted=True,
                              reason="verify failed", not_before=now - 30).carrying(outcome)
            tip = _commit(store, release, (tip,), int(now - 60))
        elif kind == "finished":
            tip = _commit(store, result, (tip,), int(now - 60))
        refs.append(RefUpdate(claim_ref(key), tip, None))
    for n in range(agents):
        name = f"agent-{n:02d}"
        state = AGENT_STATES[n % len(AGENT_STATES)]
        beat = Heartbeat(id=name, host=f"host-{n % 8}", pid=1000 + n, version="0.1.0",
                         specialties=(SPECIALTIES[n % 5], SPECIALTIES[(n + 1) % 5]), max_tasks=2,
                         holding=(), state=state,  # type: ignore[arg-type]
                         started_at=now - 3600, last_seen=now - (600 if n % 9 == 0 else 1),
                         heartbeat_seconds=15.0,
                         paused_until=now + 900 if state == "paused" else None)
        refs.append(RefUpdate(agent_ref(name), _commit(store, beat, (), int(now)), None))
    commit = store.write_commit(editor.write(), (main,), "bench <bench@localhost>", int(now),
                                f"{tasks} tasks")
    refs.append(RefUpdate("refs/heads/main", commit, main))
    report = client.remote.push(refs, atomic=True)
    client.close()
    if not report.ok:
        raise SystemExit(f"could not write the bench repo: {sorted(report.rejected)[:5]}")
    return made


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(conn: http.client.HTTPConnection, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    conn.request("GET", path)
    answer = conn.getresponse()
    body = answer.read()
    elapsed = time.perf_counter() - started
    if answer.status != 200:
        raise SystemExit(f"GET {path}: {answer.status} {body[:200]!r}")
    return elapsed * 1000, len(body)


def serve(repo: Path, work: Path, refresh: float) -> ServeServer:
    client = StateClient(str(repo), work, Identity("serve"))
    fleet = Fleet(client, refresh)
    if refresh:
        fleet.start()  # as `claude-cluster serve` runs it
    server = ServeServer(App(fleet, Gate(None)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop(server: ServeServer) -> None:
    server.shutdown()
    server.server_close()
    server.app.fleet.close()


def page_refresh() -> list[str]:
    """What a refresh of the page asks for: the page, its assets, the answers it renders."""
    assets = [f"/static/{name}" for name in ("app.css", "app.js") if (STATIC / name).is_file()]
    page = ["/", *assets] if (STATIC / "index.html").is_file() else []
    return [*page, "/api/cluster/status", "/api/tasks", "/api/queue/status"]


def measure(repo: Path, work: Path, name: str, paths: list[str], requests: int,
            mode: str) -> dict[str, Any]:
    """``cold``: every answer re-reads the refs and recomputes (refresh 0), the first one
    reads the whole repo; ``warm``: as ``serve`` runs (refresh 2 s, read by its thread)."""
    server = serve(repo, work / f"{mode}-{name.strip('/').replace('/', '-')}",
                   0.0 if mode == "cold" else 2.0)
    try:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(str(host), int(port), timeout=60)

        def once() -> tuple[float, int]:
            done = [timed(conn, path) for path in paths]
            return sum(t for t, _ in done), sum(n for _, n in done)

        first, size = once()
        times = [once()[0] for _ in range(requests)]
        conn.close()
    finally:
        stop(server)
    return {"what": name, "mode": mode, "requests": requests, "bytes": size,
            "first_ms": round(first, 1), "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(percentile(times, 0.95), 2), "max_ms": round(max(times), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    targets = {"page-refresh": page_refresh(), "/api/cluster/status": ["/api/cluster/status"],
               "/api/tasks": ["/api/tasks"]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        made = build_fleet(work / "state.git", args.tasks, args.agents)
        built = time.perf_counter() - started
        if not args.json:
            print(f"repo: {args.tasks} tasks {made}, {args.agents} agents, "
                  f"written in {built:.2f}s", flush=True)
        for mode in ("cold", "warm"):
            for name, paths in targets.items():
                rows.append(measure(work / "state.git", work, name, paths, args.requests, mode))
                if not args.json:
                    print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    if args.json:
        print(json.dumps({"tasks": args.tasks, "agents": args.agents, "made": made,
                          "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
