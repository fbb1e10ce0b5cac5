"""What may start a follow-up round: reviews, comments and failed checks as :class:`Trigger`,
from the forge's lists (the poller) or from webhook payloads (the receiver), judged alike.

A payload is hostile input: :func:`parse_event` reads only the fields it needs, each checked
for its type, and a missing or mistyped one is a :class:`PayloadError` naming it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from cluster.agent.pulls import (
    CheckFailure,
    Comment,
    Conversations,
    LineComment,
    Pull,
    Review,
    ReviewState,
    Trigger,
)
from cluster.intake.followups import FollowUpPolicy, command_in
from cluster.intake.issues import REPO_NAME

REVIEW_STATES = ("CHANGES_REQUESTED", "COMMENTED", "APPROVED", "DISMISSED", "PENDING")
FAILED = ("failure", "timed_out")
MAX_ID = 2**53
STATUS_FAILED = ("failure", "error")
EVENTS = ("pull_request_review", "pull_request_review_comment", "issue_comment", "check_run",
          "status")
CHECK_EVENTS = ("check_run", "status")  # the ones that need the policy's ``checks``
ACTIONS = {"pull_request_review": "submitted", "pull_request_review_comment": "created",
           "issue_comment": "created", "check_run": "completed"}  # a status has no action


class PayloadError(ValueError):
    """A webhook payload without a field it must have (``field``), or with a wrong type."""

    def __init__(self, field: str, wanted: str) -> None:
        super().__init__(f"'{field}' is missing or not {wanted}")
        self.field = field


def review_trigger(review: Review, number: int, policy: FollowUpPolicy) -> Trigger | str:
    """A review that requests changes, or a commenting one that carries the command."""
    if review.state != "CHANGES_REQUESTED" and not (
            review.state == "COMMENTED" and command_in(review.body, policy.command)[0]):
        return (f"review {review.id} is {review.state.lower()}: it does not request changes "
                f"nor carry {policy.command!r}")
    return Trigger("review", review.id, number, review.author, review.body, review.submitted_at)


def line_trigger(comment: LineComment, number: int, policy: FollowUpPolicy,
                 reviews: Collection[int]) -> Trigger | str:
    """A line comment that carries the command, unless it belongs to a review in ``reviews``
    (the ids of reviews that are triggers themselves: that review's round answers it)."""
    if comment.review_id is not None and comment.review_id in reviews:
        return f"review comment {comment.id} is part of review {comment.review_id}"
    if not command_in(comment.body, policy.command)[0]:
        return f"review comment {comment.id} does not carry {policy.command!r}"
    return Trigger("review_comment", comment.id, number, comment.author, comment.body,
                   comment.created_at)


def comment_trigger(comment: Comment, number: int, policy: FollowUpPolicy) -> Trigger | str:
    if not command_in(comment.body, policy.command)[0]:
        return f"comment {comment.id} does not carry {policy.command!r}"
    return Trigger("comment", comment.id, number, comment.author, comment.body,
                   comment.created_at)


def check_trigger(failure: CheckFailure, number: int, at: float = 0.0) -> Trigger | str:
    if failure.kind == "check_run" and failure.conclusion not in FAILED:
        return f"check run {failure.id} concluded {failure.conclusion or 'nothing'}: not a failure"
    return Trigger(failure.kind, failure.id, number, "", failure.name, at)


@dataclass(frozen=True)
class Event:
    """What a webhook delivery is about: the pull requests (``numbers``) on ``repo`` and the
    one review, comment or check it carries; ``at``: when it happened."""

    repo: str
    numbers: tuple[int, ...]
    item: Review | LineComment | Comment | CheckFailure
    at: float


class _Reader:
    """Typed reads of dotted paths in a payload; each wrong one names its field."""

    def __init__(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise PayloadError("(payload)", "a JSON object")
        self.payload = payload

    def get(self, path: str, kind: str, optional: bool = False) -> Any:
        value: Any = self.payload
        parts = path.split(".")
        for at, part in enumerate(parts):
            if value is not None and not isinstance(value, dict):
                raise PayloadError(".".join(parts[:at]), "an object")
            value = value.get(part) if value is not None else None
        if value is None and optional:
            return None
        if kind == "id":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < MAX_ID:
                raise PayloadError(path, "a positive integer")
        elif kind == "object":
            if not isinstance(value, dict):
                raise PayloadError(path, "an object")
        elif kind == "list":
            if not isinstance(value, list):
                raise PayloadError(path, "a list")
        elif not isinstance(value, str):
            raise PayloadError(path, "a string")
        return value

    def text(self, path: str) -> str:
        return str(self.get(path, "str", optional=True) or "")

    def time(self, path: str) -> float:
        value = self.get(path, "str", optional=True)
        if value is None:
            return 0.0
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise PayloadError(path, "an ISO 8601 time") from None

    def repo(self) -> str:
        name: str = self.get("repository.full_name", "str")
        if not REPO_NAME.fullmatch(name):
            raise PayloadError("repository.full_name", "owner/name")
        return name


def action_of(event: str, payload: Any) -> str | None:
    """Why a delivery of ``event`` is not one to act on (another action), None if it is."""
    if event == "status":
        state = payload.get("state") if isinstance(payload, dict) else None
        return None if state in STATUS_FAILED else f"commit status {state!r}: not a failure"
    action = payload.get("action") if isinstance(payload, dict) else None
    if action != ACTIONS[event]:
        return f"{event} action {action!r} is not {ACTIONS[event]!r}"
    return None


def parse_event(event: str, payload: Any) -> Event | str:
    """The :class:`Event` of a delivery, or why it is none of ours (a line); a payload of
    the wrong shape is a :class:`PayloadError`."""
    read = _Reader(payload)
    ignored = action_of(event, payload)
    if ignored is not None:
        return ignored
    repo = read.repo()
    if event == "pull_request_review":
        return _review(read, repo)
    if event == "pull_request_review_comment":
        return _line(read, repo)
    if event == "issue_comment":
        read.get("issue", "object")
        if read.payload["issue"].get("pull_request") is None:
            return "a comment on an issue, not on a pull request"
        number = read.get("issue.number", "id")
        comment = Comment(read.get("comment.id", "id"), read.get("comment.user.login", "str"),
                          read.text("comment.body"), read.time("comment.created_at"))
        return Event(repo, (number,), comment, comment.created_at)
    if event == "status":
        return _status(read, repo)
    return _check(read, repo)


def _review(read: _Reader, repo: str) -> Event:
    state = read.get("review.state", "str").upper()
    if state not in REVIEW_STATES:
        raise PayloadError("review.state", f"one of {', '.join(REVIEW_STATES).lower()}")
    review = Review(read.get("review.id", "id"), read.get("review.user.login", "str"),
                    cast(ReviewState, state), read.text("review.body"),
                    read.time("review.submitted_at"), read.text("review.commit_id"))
    return Event(repo, (read.get("pull_request.number", "id"),), review, review.submitted_at)


def _line(read: _Reader, repo: str) -> Event:
    line = read.get("comment.line", "id", optional=True)
    comment = LineComment(
        read.get("comment.id", "id"), read.get("comment.user.login", "str"),
        read.text("comment.body"), read.get("comment.path", "str"), line,
        read.text("comment.diff_hunk"), read.get("comment.in_reply_to_id", "id", optional=True),
        read.get("comment.pull_request_review_id", "id", optional=True),
        read.time("comment.created_at"))
    return Event(repo, (read.get("pull_request.number", "id"),), comment, comment.created_at)


def _check(read: _Reader, repo: str) -> Event:
    pulls = read.get("check_run.pull_requests", "list")
    numbers = tuple(_number(item, i) for i, item in enumerate(pulls))
    failure = CheckFailure(
        "check_run", read.get("check_run.id", "id"), read.get("check_run.name", "str"),
        read.text("check_run.conclusion"), read.text("check_run.output.summary"),
        read.text("check_run.output.text"), read.text("check_run.html_url"),
        read.get("check_run.head_sha", "str"))
    return Event(repo, numbers, failure, read.time("check_run.completed_at"))


def _status(read: _Reader, repo: str) -> Event:
    """A failed commit status: it names a commit, not a pull request; the pull requests whose
    head it is are found from the forge (:func:`event_triggers`)."""
    failure = CheckFailure(
        "status", read.get("id", "id"), read.get("context", "str"), read.get("state", "str"),
        read.text("description"), "", read.text("target_url"), read.get("sha", "str"))
    return Event(repo, (), failure, read.time("created_at"))


def _number(item: Any, index: int) -> int:
    number = item.get("number") if isinstance(item, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < MAX_ID:
        raise PayloadError(f"check_run.pull_requests[{index}].number", "a positive integer")
    return number


def event_triggers(forge: Conversations, event: Event,
                   policy: FollowUpPolicy) -> list[tuple[Trigger, Pull]] | str:
    """The triggers a delivery carries, each with its pull request as the forge shows it now
    (its head branch and state), judged as the poller judges the same item; or why none."""
    numbers = event.numbers
    if not numbers and isinstance(event.item, CheckFailure):  # a status, or a fork's check run
        numbers = tuple(p.number for p in forge.open_pulls(event.repo)
                        if p.head_sha == event.item.head_sha)
    if not numbers:
        return "the delivery names no pull request, and no open one has its commit as head"
    found: list[tuple[Trigger, Pull]] = []
    reasons: list[str] = []
    for number in numbers:
        pull = forge.pull(event.repo, number)
        got = _judged(forge, event, pull, policy)
        if isinstance(got, str):
            reasons.append(f"{event.repo}#{number}: {got}")
        else:
            found.append((got, pull))
    return found or "; ".join(reasons)


def _judged(forge: Conversations, event: Event, pull: Pull,
            policy: FollowUpPolicy) -> Trigger | str:
    item, number = event.item, pull.number
    if isinstance(item, Review):
        return review_trigger(item, number, policy)
    if isinstance(item, LineComment):
        reviews: set[int] = set()
        if item.review_id is not None and command_in(item.body, policy.command)[0]:
            reviews = {r.id for r in forge.reviews(pull.repo, number)
                       if isinstance(review_trigger(r, number, policy), Trigger)}
        return line_trigger(item, number, policy, reviews)
    if isinstance(item, Comment):
        return comment_trigger(item, number, policy)
    if item.head_sha != pull.head_sha:
        return (f"check run {item.id} ran on {item.head_sha[:12]}, not on the pull "
                f"request's head {pull.head_sha[:12]}")
    return check_trigger(item, number, event.at)
