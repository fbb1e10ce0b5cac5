"""The server's one reading of the state repo: re-read when the remote's refs moved, at most
every ``refresh`` seconds, and every answer computed once per reading (the page's refreshes
and a Prometheus scrape then cost a dictionary lookup)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import ClusterError
from cluster.serve import api
from cluster.serve.chain import ChainTotals, Tips, chain, history_entry, result_fields
from cluster.state.client import StateClient
from cluster.state.report import status
from cluster.state.snapshot import Snapshot

DEFAULT_REFRESH = 2.0


@dataclass
class View:
    """Everything the API says about one snapshot at one time; parts are built when asked."""

    snap: Snapshot
    now: float
    generation: int  # grows by one each time the remote's refs are seen to move
    totals: tuple[float, int, int]  # cost, input and output tokens of every attempt so far
    _memo: dict[str, Any] = field(default_factory=dict)

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._memo:
            self._memo[name] = build()
        return self._memo[name]

    @property
    def report(self) -> dict[str, Any]:
        """``claude-cluster status --json`` of this snapshot."""
        return dict(self._get("report", lambda: status(self.snap, self.now)))

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._get("rows", lambda: [api.api_row(self.snap, key, self.now)
                                               for key in api.task_keys(self.snap)]))

    @property
    def cluster_status(self) -> dict[str, Any]:
        return dict(self._get("cluster", lambda: api.cluster_status(self.snap, self.report,
                                                                    self.now)))

    def cluster_status_json(self) -> bytes:
        return bytes(self._get("cluster.json", lambda: json.dumps(self.cluster_status).encode()))

    def queue(self) -> dict[str, Any]:
        return dict(self._get("queue", lambda: api.queue_status(self.snap, self.rows, self.now)))

    def tasks_json(self, query: dict[str, str]) -> bytes:
        """The answer of /api/tasks for ``query`` (the unfiltered one is kept)."""
        if any(query.get(k) for k in ("state", "specialty", "label")):
            rows = api.filtered(self.rows, query)
            return json.dumps({"tasks": rows, "total": len(rows)}).encode()
        return bytes(self._get("tasks.json", lambda: json.dumps(
            {"tasks": self.rows, "total": len(self.rows)}).encode()))

    def metrics_text(self, render: Callable[[View], bytes]) -> bytes:
        return bytes(self._get("metrics", lambda: render(self)))


class Fleet:
    """Reads the state repo through one StateClient (guarded: it is not thread-safe).

    Inline (the default) a request that finds the reading older than ``refresh`` seconds
    re-reads first; after :meth:`start` a thread does that every ``refresh`` seconds, builds
    the common answers ahead, and requests never wait on a reading (but the very first).
    """

    def __init__(self, client: StateClient, refresh: float = DEFAULT_REFRESH,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.refresh, self.clock = client, refresh, clock
        self._lock = threading.Lock()
        self._refs: dict[str, str] | None = None
        self._snap: Snapshot | None = None
        self._view: View | None = None
        self._checked = -float("inf")
        self._generation = 0
        self._spent: tuple[int, tuple[float, int, int]] = (0, (0.0, 0, 0))
        self._totals = ChainTotals()
        self._tips = Tips()
        self._details: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None  # why the last reading failed (None: it did not)

    @property
    def url(self) -> str:
        return self.client.remote.url

    def start(self) -> None:
        """Keep the reading fresh from a thread of its own (ends with :meth:`close`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._refresher, name="serve-refresh",
                                            daemon=True)
            self._thread.start()

    def _refresher(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._update()
                    view = self._view
                if view is not None:  # the answers every page refresh and scrape asks for
                    view.cluster_status_json()
                    view.tasks_json({})
                    view.queue()
            except Exception as exc:  # the thread must live on: /health tells the error
                self.error = f"internal error reading the state repo ({type(exc).__name__})"
            self._stop.wait(self.refresh)

    def view(self) -> View | None:
        """The current view (re-read first when due, unless the refresher does it). None only
        while the repo was never read."""
        if self._thread is not None and self._view is not None:
            return self._view
        with self._lock:
            if time.monotonic() - self._checked >= self.refresh or self._view is None:
                self._update()
            return self._view

    def _update(self) -> None:
        self._checked = time.monotonic()
        try:
            refs = self.client.remote.refs()
            if refs != self._refs or self._snap is None:
                self._snap = self.client.reader.read(refs)
                self._refs = refs
                self._generation += 1
            self._view = View(self._snap, self.clock(), self._generation, self._fleet_totals())
            self.error = None
        except (ClusterError, OSError) as exc:
            self.error = str(exc) or type(exc).__name__

    def _fleet_totals(self) -> tuple[float, int, int]:
        """Cost and tokens of every attempt in the repo (once per reading)."""
        assert self._snap is not None
        if self._spent[0] == self._generation:
            return self._spent[1]
        snap = self._snap
        spent = []
        for key in api.task_keys(snap):
            tip = self._tips.of(snap, key)
            result = snap.result(key) if tip is None else None
            if result is not None:  # archived without its chain (an old or rewritten repo)
                spent.append((result.cost_usd, result.input_tokens, result.output_tokens))
            else:
                spent.append(self._totals.of(snap.store, tip, key))
        totals = (round(sum(s[0] for s in spent), 6), sum(s[1] for s in spent),
                  sum(s[2] for s in spent))
        self._spent = (self._generation, totals)
        return totals

    def task(self, key: str) -> dict[str, Any] | None:
        """/api/tasks/<key>: its row, spec, attempt history and result; None if unknown."""
        view = self.view()
        if view is None or not view.snap.known(key):
            return None
        snap = view.snap
        with self._lock:
            tip = self._tips.of(snap, key)
            cache_key = (key, tip, snap.main)
            cached = self._details.get(cache_key)
            if cached is None:
                steps = [history_entry(*step) for step in chain(snap.store, tip, key)]
                result = snap.result(key)
                cached = {"spec": api.task_spec(snap, key), "history": steps,
                          "result": result_fields(result) if result is not None else None}
                if len(self._details) > 4096:
                    self._details.clear()
                self._details[cache_key] = cached
        return {**api.api_row(snap, key, view.now), **cached}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self.client.close()
