"""The agent's Prometheus metrics, served on a local port when ``metrics_port`` is set."""

from __future__ import annotations

from typing import Any, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    start_http_server,
)

from cluster import __version__
from cluster.state.records import Heartbeat, Release, Result
from cluster.state.statuses import AgentState

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class Metrics:
    """One registry per agent (no global state), updated from the claim loop's thread."""

    def __init__(self, agent: str) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.info = Gauge("claude_cluster_agent_info", "Agent identity", ["agent", "version"],
                          registry=reg)
        self.info.labels(agent, __version__).set(1)
        self.claimed = Counter("claude_cluster_tasks_claimed", "Claims accepted", registry=reg)
        self.finished = Counter("claude_cluster_tasks_finished", "Attempts published",
                                ["status", "kind"], registry=reg)
        self.running = Gauge("claude_cluster_tasks_running", "Tasks held now", registry=reg)
        self.duration = Histogram("claude_cluster_attempt_duration_seconds",
                                  "Wall-clock time of one attempt", buckets=DURATION_BUCKETS,
                                  registry=reg)
        self.tokens = Counter("claude_cluster_tokens", "Model tokens used", ["direction"],
                              registry=reg)
        self.cost = Counter("claude_cluster_cost_usd", "Model cost in US dollars", registry=reg)
        self.pauses = Counter("claude_cluster_rate_limit_pauses", "Rate-limit pauses", registry=reg)
        self.lost = Counter("claude_cluster_claims_lost", "Claims lost at renewal", registry=reg)
        self.fenced = Counter("claude_cluster_results_fenced", "Results refused by fencing",
                              registry=reg)
        self.rejected = Counter("claude_cluster_claim_pushes_rejected",
                                "Claim attempts another agent won", registry=reg)
        # Every push to the state repo, by what it was for (claim, result, release, renew,
        # heartbeat, fold, judge, stop): what a hosted repo's push budget counts.
        self.pushes = Counter("claude_cluster_pushes", "Pushes to the state repo", ["kind"],
                              registry=reg)
        # Every read that reached the state repo's host: a fetch (it lists and brings at once).
        self.reads = Counter("claude_cluster_state_reads", "Reads of the state repo", ["kind"],
                             registry=reg)
        # What each read followed: a wake-up (poked, moved, told, turn) or the deadline the
        # wait ran to (heartbeat, poll, fold, lease, release, pause, cooled, claimed: at
        # once after a claim, backoff, stopping): docs/agent.md.
        self.wakeups = Counter("claude_cluster_wakeups", "What each read of the state repo "
                               "followed", ["why"], registry=reg)
        self.rode = Counter("claude_cluster_heartbeats_carried",
                            "Heartbeats that rode on a claim's or result's push", registry=reg)
        # What `claude-cluster agent health` reads: the last heartbeat the remote accepted.
        self.beat_at = Gauge("claude_cluster_heartbeat_timestamp_seconds",
                             "When the remote last accepted this agent's heartbeat", registry=reg)
        self.beat_every = Gauge("claude_cluster_heartbeat_interval_seconds",
                                "How often the agent heartbeats", registry=reg)
        self.state = Enum("claude_cluster_agent_state", "State said by the last heartbeat",
                          states=list(get_args(AgentState)), registry=reg)

    def serve(self, port: int, bind: str = "127.0.0.1") -> Any:
        server, _thread = start_http_server(port, addr=bind, registry=self.registry)
        return server

    def beat(self, heartbeat: Heartbeat) -> None:
        """A heartbeat the remote accepted."""
        self.beat_at.set(heartbeat.last_seen)
        self.beat_every.set(heartbeat.heartbeat_seconds)
        self.state.state(heartbeat.state)

    def push(self, kind: str) -> None:
        self.pushes.labels(kind).inc()

    def pushed(self) -> dict[str, int]:
        """Pushes so far by kind."""
        return _by_kind(self.pushes)

    def read(self) -> dict[str, int]:
        """Reads of the state repo so far by kind (list, fetch)."""
        return _by_kind(self.reads)

    def woke(self) -> dict[str, int]:
        """Wake-ups so far by why."""
        return _by_kind(self.wakeups, "why")

    def published(self, record: Result | Release) -> None:
        self.finished.labels(record.status, record.KIND).inc()
        if record.duration_s is not None:
            self.duration.observe(record.duration_s)
        self.tokens.labels("input").inc(record.input_tokens)
        self.tokens.labels("output").inc(record.output_tokens)
        self.cost.inc(record.cost_usd)


def _by_kind(counter: Counter, label: str = "kind") -> dict[str, int]:
    return {sample.labels[label]: int(sample.value)
            for metric in counter.collect() for sample in metric.samples
            if sample.name.endswith("_total")}
