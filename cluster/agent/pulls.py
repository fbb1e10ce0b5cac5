"""A pull request's conversation as the forges show it: reviews, comments, failed checks.

The one vocabulary that intake (which turns a review into a follow-up task) and the task
runner (which works the follow-up and answers) share; :class:`Conversations` is what a forge
implements for them (GitHub through PyGithub, the offline LocalForge through its records).
Everything here that a person wrote (bodies, names, check output) is untrusted data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from cluster.state.schema import TriggerKind

# On every comment the agents write (replies, round notes, refusals): intake never acts on one.
MARKER = "<!-- claude-cluster -->"
ReviewState = Literal["CHANGES_REQUESTED", "COMMENTED", "APPROVED", "DISMISSED", "PENDING"]


@dataclass(frozen=True)
class Pull:
    """One pull request: where its work lives (``head_branch`` at ``head_sha``) and its state."""

    repo: str
    number: int
    url: str
    head_branch: str
    head_sha: str
    base: str
    state: Literal["open", "closed"]
    author: str


@dataclass(frozen=True)
class Review:
    """A submitted review; its line comments are :class:`LineComment` with its ``id``."""

    id: int
    author: str
    state: ReviewState
    body: str
    submitted_at: float
    commit_id: str


@dataclass(frozen=True)
class LineComment:
    """A review comment on a line of the diff: a thread's first comment, or a reply in it
    (``in_reply_to``: the thread's first comment). ``line`` is None on an outdated diff."""

    id: int
    author: str
    body: str
    path: str
    line: int | None
    diff_hunk: str
    in_reply_to: int | None
    review_id: int | None
    created_at: float


@dataclass(frozen=True)
class Comment:
    """A comment on the pull request's conversation (GitHub's issue comment)."""

    id: int
    author: str
    body: str
    created_at: float


@dataclass(frozen=True)
class CheckFailure:
    """A check run that concluded ``failure`` (or ``timed_out``), or a commit status in
    ``failure``/``error``, on a commit: ``kind`` names which, ``id`` is the forge's id."""

    kind: Literal["check_run", "status"]
    id: int
    name: str
    conclusion: str
    summary: str
    text: str
    url: str
    head_sha: str


@dataclass(frozen=True)
class Trigger:
    """What may start a follow-up round: ``kind`` and ``id`` as in a task's
    ``follow_up.trigger``; ``author`` is who wrote it (empty for checks and statuses)."""

    kind: TriggerKind
    id: int
    pull_request: int
    author: str
    body: str
    created_at: float


class Conversations(Protocol):
    """What a forge offers about pull requests. Lists come whole (every page), oldest first."""

    def pull(self, repo: str, number: int) -> Pull: ...

    def open_pulls(self, repo: str) -> list[Pull]: ...

    def reviews(self, repo: str, number: int) -> list[Review]: ...

    def review_comments(self, repo: str, number: int) -> list[LineComment]: ...

    def pull_comments(self, repo: str, number: int) -> list[Comment]: ...

    def failed_checks(self, repo: str, sha: str) -> list[CheckFailure]: ...

    def can_write(self, repo: str, login: str) -> bool:
        """Whether ``login`` may push to ``repo`` (GitHub: admin, maintain or write)."""
        ...

    def reply(self, repo: str, number: int, comment_id: int, text: str) -> None:
        """Answer in the thread of review comment ``comment_id`` on pull request ``number``."""
        ...

    def comment(self, repo: str, number: int, text: str) -> None: ...
