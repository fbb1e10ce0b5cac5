"""`claude-cluster agent health`: the agent's real state from its own metrics endpoint.

Healthy means the remote accepted a heartbeat within ``ONLINE_BEATS`` heartbeat intervals (the rule
``claude-cluster status`` uses to call an agent online) plus :data:`SLACK` seconds for pushes
that a busy host or state repo slows down, and that heartbeat did not say
``blocked`` (a refused credential: the agent claims nothing until restarted) or ``stopped``.
A usage-window pause is healthy: it ends by itself. Container healthchecks run it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from cluster.state.records import ONLINE_BEATS

BEAT_AT = "claude_cluster_heartbeat_timestamp_seconds"
BEAT_EVERY = "claude_cluster_heartbeat_interval_seconds"
STATE = "claude_cluster_agent_state"
UNHEALTHY_STATES = frozenset({"blocked", "stopped"})
SLACK = 15.0


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str


def read_metrics(port: int, timeout: float = 5.0) -> str:
    """The agent's metrics text from 127.0.0.1:``port``; OSError when it does not answer."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return str(answer.read().decode("utf-8"))


def judge(metrics: str, now: float) -> Health:
    """Healthy or not, and why, from an agent's metrics text at time ``now``."""
    values: dict[str, float] = {}
    state = ""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == STATE and sample.value == 1:
                state = sample.labels.get(STATE, "")
            elif sample.name in (BEAT_AT, BEAT_EVERY):
                values[sample.name] = sample.value
    beat_at, every = values.get(BEAT_AT, 0.0), values.get(BEAT_EVERY, 0.0)
    if not beat_at or not every:
        return Health(False, "no heartbeat accepted yet")
    age = now - beat_at
    if age >= ONLINE_BEATS * every + SLACK:
        return Health(False, f"last heartbeat {age:.0f}s ago (every {every:g}s)")
    if state in UNHEALTHY_STATES:
        return Health(False, f"state {state}")
    return Health(True, f"{state or 'running'}, heartbeat {age:.0f}s ago")


def check(port: int, now: float) -> Health:
    """:func:`judge` of what the agent on ``port`` serves; unhealthy when it serves nothing."""
    try:
        text = read_metrics(port)
    except (OSError, urllib.error.URLError) as exc:
        return Health(False, f"no metrics on 127.0.0.1:{port}: {exc}")
    return judge(text, now)
