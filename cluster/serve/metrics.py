"""Fleet metrics in Prometheus's text format, computed from one view of the state repo: one
scrape target for the whole fleet (each agent's own metrics: cluster/agent/metrics.py)."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from cluster import __version__
from cluster.serve.state import View
from cluster.state.statuses import AgentState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(view: View) -> bytes:
    """The exposition of ``view``: a fresh registry each time (no global state)."""
    reg = CollectorRegistry()
    info = Gauge("claude_cluster_fleet_info", "The serving process", ["version"], registry=reg)
    info.labels(__version__).set(1)
    tasks = Gauge("claude_cluster_fleet_tasks", "Tasks by state and specialty",
                  ["state", "specialty"], registry=reg)
    for row in view.rows:
        tasks.labels(row["state"], row["specialty"] or "").inc()
    agents = view.report["agent_detail"]
    Gauge("claude_cluster_fleet_agents_online", "Agents whose heartbeat is fresh",
          registry=reg).set(sum(1 for a in agents if a["online"]))
    by_state = Gauge("claude_cluster_fleet_agents", "Agents by the state their heartbeat says "
                     "(offline: not online, whatever it said)", ["state"], registry=reg)
    for state in (*get_args(AgentState), "offline"):
        by_state.labels(state).set(0)
    for agent in agents:
        by_state.labels(agent["state"] if agent["online"] else "offline").inc()
    oldest = view.queue()["oldest_pending_age_s"]
    Gauge("claude_cluster_fleet_oldest_pending_seconds", "Age of the oldest pending task "
          "(0 when none is pending)", registry=reg).set(oldest or 0)
    Gauge("claude_cluster_fleet_pending_claimable", "Pending tasks an agent may claim now",
          registry=reg).set(view.queue()["claimable_now"])
    Gauge("claude_cluster_fleet_stale_claims", "Claims whose lease expired, not yet taken over",
          registry=reg).set(len(view.cluster_status["stale"]))
    cost, tokens_in, tokens_out = view.totals
    Gauge("claude_cluster_fleet_cost_usd_total", "Model cost of every attempt recorded, US "
          "dollars", registry=reg).set(cost)
    tokens = Gauge("claude_cluster_fleet_tokens_total", "Model tokens of every attempt recorded",
                   ["kind"], registry=reg)
    tokens.labels("input").set(tokens_in)
    tokens.labels("output").set(tokens_out)
    Gauge("claude_cluster_fleet_invalid_tasks", "Task files no agent will run (invalid, "
          "replayed)", registry=reg).set(len(view.cluster_status["invalid"]))
    Gauge("claude_cluster_fleet_read_timestamp_seconds", "When the state repo was read",
          registry=reg).set(view.snap.taken_at)
    return generate_latest(reg)
