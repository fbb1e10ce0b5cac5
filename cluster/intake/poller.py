"""``claude-cluster intake``: poll a repo's labelled issues and file the new ones as tasks."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cluster.errors import ClusterError
from cluster.intake.filing import Filed, file_issues
from cluster.intake.issues import IssueFeed
from cluster.intake.taskdoc import Policy
from cluster.state.client import StateClient


def poll_once(feed: IssueFeed, client: StateClient, repo: str, policy: Policy) -> Filed:
    return file_issues(client, feed.labelled(repo, policy.label), policy)


def poll_forever(feed: IssueFeed, client: StateClient, repo: str, policy: Policy,
                 interval: float, stop: threading.Event,
                 say: Callable[[str], None] = print) -> None:
    """One pass every ``interval`` seconds until ``stop`` is set; a failed pass is reported
    and the next one tries again (GitHub or the state repo may be away for a while)."""
    while not stop.is_set():
        try:
            say(poll_once(feed, client, repo, policy).summary())
        except ClusterError as exc:
            say(f"intake pass failed: {exc}")
        stop.wait(interval)
