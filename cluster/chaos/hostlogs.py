"""The agents' event files and units on the hosts, read over docker exec (the trusted channel)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from cluster.transport import docker
from cluster.units import layout

EventCounts = Counter[str]


def read_events(hosts: Sequence[str]) -> EventCounts:
    """Counts of every event name over all hosts; ``claimed`` takeovers also as ``takeover``."""
    counts: EventCounts = Counter()
    for host in hosts:
        _, text, _ = docker.exec_argv(docker.get(docker.client(), host),
                                      ["cat", str(layout.EVENTS_FILE)])  # fmt: skip
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by SIGKILL
            counts[str(event.get("event"))] += 1
            if event.get("event") == "claimed" and event.get("takeover"):
                counts["takeover"] += 1
    return counts


def agent_state(host: str, lines: int = 15) -> str:
    """The agent unit's state, restarts and last journal lines: why an agent is not back."""
    container = docker.get(docker.client(), host)
    _, shown, _ = docker.exec_argv(container, [
        "systemctl", "show", layout.UNIT_NAME, "--no-pager",
        "-p", "ActiveState,SubState,Result,NRestarts,ExecMainStatus,MainPID"])  # fmt: skip
    _, journal, _ = docker.exec_argv(container, [
        "journalctl", "-u", layout.UNIT_NAME, "-n", str(lines), "--no-pager",
        "-o", "short-unix"])  # fmt: skip
    state = " ".join(shown.split())
    return f"{host}: {state}\n{journal.rstrip()}"
