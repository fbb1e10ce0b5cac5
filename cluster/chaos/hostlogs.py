"""The agents' event files on the hosts, read over docker exec and counted by event."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from cluster.testhosts import engine
from cluster.units import layout

EventCounts = Counter[str]


def read_events(hosts: Sequence[str]) -> EventCounts:
    """Counts of every event name over all hosts; ``claimed`` takeovers also as ``takeover``."""
    counts: EventCounts = Counter()
    for host in hosts:
        _, text, _ = engine.exec_argv(engine.get(engine.client(), host),
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
