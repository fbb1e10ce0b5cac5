"""PyGithub's pull-request objects as :mod:`cluster.agent.pulls` records (for forge_github).

Everything read here was written by someone else (reviewers, CI): it is kept as data, never
interpreted. Times become epoch floats; a deleted account shows as ``ghost``, as on GitHub.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, cast

from github.CheckRun import CheckRun
from github.CommitStatus import CommitStatus
from github.GithubObject import GithubObject
from github.IssueComment import IssueComment
from github.NamedUser import NamedUser
from github.Organization import Organization
from github.PullRequest import PullRequest
from github.PullRequestComment import PullRequestComment
from github.PullRequestReview import PullRequestReview

from cluster.agent.pulls import (
    CheckFailure,
    Comment,
    LineComment,
    Pull,
    Review,
    ReviewState,
)

GHOST = "ghost"  # how GitHub names the author of a deleted account
FAILED_RUNS = ("failure", "timed_out")
FAILED_STATUSES = ("failure", "error")
WRITE_PERMISSIONS = ("admin", "maintain", "write")
REVIEW_STATES: dict[str, ReviewState] = {
    s: s for s in ("CHANGES_REQUESTED", "COMMENTED", "APPROVED", "DISMISSED", "PENDING")
}


def _login(user: NamedUser | Organization | None) -> str:
    return str(user.login) if user is not None and user.login else GHOST


def _epoch(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0


def _delivered(item: GithubObject) -> dict[str, Any]:
    """The attributes as GitHub sent them in the list. PyGithub's properties fetch an object
    again for a key GitHub leaves out (``in_reply_to_id`` of a thread's first comment): one
    request per comment, which this avoids."""
    return cast(dict[str, Any], item._rawData)


def to_pull(repo: str, pull: PullRequest) -> Pull:
    state: Literal["open", "closed"] = "closed" if pull.state == "closed" else "open"
    return Pull(
        repo=repo, number=int(pull.number), url=str(pull.html_url),
        head_branch=str(pull.head.ref), head_sha=str(pull.head.sha), base=str(pull.base.ref),
        state=state, author=_login(pull.user),
    )


def to_review(review: PullRequestReview) -> Review:
    state = str(review.state or "").upper()
    return Review(
        id=int(review.id), author=_login(review.user),
        # A state GitHub may add later counts as a plain comment: it cannot request changes.
        state=REVIEW_STATES.get(state, "COMMENTED"),
        body=review.body or "", submitted_at=_epoch(review.submitted_at),
        commit_id=str(review.commit_id or ""),
    )


def to_line_comment(comment: PullRequestComment) -> LineComment:
    data = _delivered(comment)
    reply_to, review_id = data.get("in_reply_to_id"), data.get("pull_request_review_id")
    return LineComment(
        id=int(comment.id), author=_login(comment.user), body=comment.body or "",
        path=str(data.get("path") or ""),
        line=data["line"] if isinstance(data.get("line"), int) else None,
        diff_hunk=str(data.get("diff_hunk") or ""),
        in_reply_to=reply_to if isinstance(reply_to, int) else None,
        review_id=review_id if isinstance(review_id, int) else None,
        created_at=_epoch(comment.created_at),
    )


def to_comment(comment: IssueComment) -> Comment:
    return Comment(id=int(comment.id), author=_login(comment.user), body=comment.body or "",
                   created_at=_epoch(comment.created_at))


def failed_runs(runs: Iterable[CheckRun]) -> list[CheckFailure]:
    """The completed runs that failed or timed out (GitHub lists each name's latest run)."""
    found = []
    for run in runs:
        if run.status != "completed" or run.conclusion not in FAILED_RUNS:
            continue
        output = run.output
        found.append(CheckFailure(
            kind="check_run", id=int(run.id), name=str(run.name), conclusion=str(run.conclusion),
            summary=(output.summary if output is not None else None) or "",
            text=(output.text if output is not None else None) or "",
            url=str(run.html_url or run.details_url or ""), head_sha=str(run.head_sha),
        ))
    return sorted(found, key=lambda f: f.id)


def failed_statuses(statuses: Iterable[CommitStatus], sha: str) -> list[CheckFailure]:
    """The contexts whose latest status is ``failure`` or ``error``; older ones are history."""
    latest: dict[str, CommitStatus] = {}
    for item in statuses:
        seen = latest.get(item.context)
        if seen is None or (_epoch(item.created_at), item.id) > (_epoch(seen.created_at), seen.id):
            latest[item.context] = item
    found = [
        CheckFailure(
            kind="status", id=int(item.id), name=str(item.context), conclusion=str(item.state),
            summary=item.description or "", text="", url=str(item.target_url or ""),
            head_sha=sha,
        )
        for item in latest.values() if item.state in FAILED_STATUSES
    ]
    return sorted(found, key=lambda f: f.id)
