"""Polling intake: labelled issues, and conversations on the agents' pull requests, become
tasks; :func:`file_follow_ups` is also what the webhook files its triggers with."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from cluster.agent.pulls import Conversations, Pull, Trigger
from cluster.errors import ClusterError
from cluster.intake.filing import Filed, file_issues, file_planned
from cluster.intake.followups import FollowUpPolicy, Refused, opening_task, plan_follow_ups
from cluster.intake.issues import IssueFeed
from cluster.intake.taskdoc import Known, Planned, Policy
from cluster.intake.triggers import check_trigger, comment_trigger, line_trigger, review_trigger
from cluster.state.client import StateClient
from cluster.state.snapshot import Snapshot


def poll_once(feed: IssueFeed, client: StateClient, repo: str, policy: Policy) -> Filed:
    return file_issues(client, feed.labelled(repo, policy.label), policy)


def triggers_of(forge: Conversations, pull: Pull, policy: FollowUpPolicy) -> list[Trigger]:
    """What on ``pull`` may start a round: reviews requesting changes (or commenting with
    the command), comments and line comments with the command, and (``policy.checks``) the
    failed checks and statuses of its head. The rest is conversation, dropped quietly."""
    repo, number = pull.repo, pull.number
    found: list[Trigger | str] = [review_trigger(r, number, policy)
                                  for r in forge.reviews(repo, number)]
    reviews = {t.id for t in found if isinstance(t, Trigger)}
    found += [line_trigger(c, number, policy, reviews)
              for c in forge.review_comments(repo, number)]
    found += [comment_trigger(c, number, policy) for c in forge.pull_comments(repo, number)]
    if policy.checks:
        found += [check_trigger(f, number) for f in forge.failed_checks(repo, pull.head_sha)]
    return [t for t in found if isinstance(t, Trigger)]


def poll_follow_ups(forge: Conversations, client: StateClient, repo: str,
                    policy: FollowUpPolicy) -> Filed:
    """One pass over the open pull requests on agents' branches (``cluster/<id>``)."""
    items = [(trigger, pull) for pull in forge.open_pulls(repo) if opening_task(pull)
             for trigger in triggers_of(forge, pull, policy)]
    return file_follow_ups(forge, client, items, policy)


def file_follow_ups(forge: Conversations, client: StateClient,
                    items: Sequence[tuple[Trigger, Pull]], policy: FollowUpPolicy) -> Filed:
    """File the follow-ups of ``items`` (at most one task per trigger, however often seen);
    with ``policy.polite``, answer each author refused for want of access, once."""
    access = _Access(forge, policy)
    refused: list[Refused] = []

    def planner(snap: Snapshot) -> list[Planned | Known | str]:
        refused.clear()  # a retry plans again: only the last plan's refusals count
        out: list[Planned | Known | str] = []
        for got in plan_follow_ups(items, snap, policy, access):
            if isinstance(got, Refused):
                refused.append(got)
                out.append(got.reason)
            else:
                out.append(got)
        return out

    filed = file_planned(client, planner)
    if policy.polite:
        for item in refused:
            answer_once(forge, item, policy)
    return filed


class _Access:
    """``can_write`` asked once per login and pass."""

    def __init__(self, forge: Conversations, policy: FollowUpPolicy) -> None:
        self.forge, self.policy = forge, policy
        self.seen: dict[tuple[str, str], bool] = {}

    def __call__(self, login: str, repo: str) -> bool:
        key = (repo.lower(), login.lower())
        if key not in self.seen:
            self.seen[key] = bool(login) and self.forge.can_write(repo, login)
        return self.seen[key]


def polite_token(item: Refused) -> str:
    """The hidden line that marks the one answer to ``item``'s trigger on its pull request."""
    return f"<!-- claude-cluster refused {item.id} -->"


def answer_once(forge: Conversations, item: Refused, policy: FollowUpPolicy) -> bool:
    """Tell the author, once, that the trigger is not acted on. Once: the answer carries
    :func:`polite_token`, and a pull request whose comments already hold it gets no other
    (the forge remembers, for the poller and the webhook alike, across restarts)."""
    token = polite_token(item)
    pull = item.pull
    if any(token in c.body for c in forge.pull_comments(pull.repo, pull.number)):
        return False
    who = f"@{item.trigger.author}" if item.trigger.author else "there"
    forge.comment(pull.repo, pull.number, (
        f"{policy.marker}\n{token}\nThanks, {who}. Only people with write access to this "
        f"repository can start agent work from a pull request, so this "
        f"{item.trigger.kind.replace('_', ' ')} was not acted on."))
    return True


def poll_forever(passes: Callable[[], str], interval: float, stop: threading.Event,
                 say: Callable[[str], None] = print) -> None:
    """One pass every ``interval`` seconds until ``stop`` is set; a failed pass is reported
    and the next one tries again (GitHub or the state repo may be away for a while)."""
    while not stop.is_set():
        try:
            say(passes())
        except ClusterError as exc:
            say(f"intake pass failed: {exc}")
        stop.wait(interval)
