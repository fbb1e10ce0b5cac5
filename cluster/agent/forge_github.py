"""GitHub (and GitHub Enterprise) as a Forge and as pull-request Conversations, through PyGithub;
its exceptions stop here."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from github import Auth, Github, GithubException
from github.GithubException import (
    BadCredentialsException,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.PullRequest import PullRequest
from github.Repository import Repository

from cluster.agent.forge import (
    ForgeAuthError,
    ForgeError,
    ForgeNotFound,
    ForgeRateLimited,
    is_slug,
)
from cluster.agent.forge_github_pulls import (
    WRITE_PERMISSIONS,
    failed_runs,
    failed_statuses,
    to_comment,
    to_line_comment,
    to_pull,
    to_review,
)
from cluster.agent.pulls import CheckFailure, Comment, LineComment, Pull, Review
from cluster.agent.repos import forge_host, host_of
from cluster.errors import SecretMissing
from cluster.secret import Secret, mask

DEFAULT_API = "https://api.github.com"
TOKEN_ENV = "GITHUB_TOKEN"  # noqa: S105 (a variable name, not a secret)
DEFAULT_RATE_LIMIT_WAIT = 60.0


def load_token(
    token: Secret | None = None,
    token_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Secret:
    """The token given, else the first line of ``token_file``, else ``$GITHUB_TOKEN``."""
    if token:
        return token
    if token_file is not None:
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretMissing(
                f"GitHub token file {token_file} cannot be read: {exc.strerror}"
            ) from exc
        if not value:
            raise SecretMissing(f"GitHub token file {token_file} is empty")
        return Secret(value.splitlines()[0].strip())
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    if not value:
        raise SecretMissing(
            f"no GitHub token: set {TOKEN_ENV} or give a token file (secrets file path)"
        )
    return Secret(value)


class GitHubForge:
    """Repos named ``owner/name`` on GitHub; ``base_url`` points at GitHub Enterprise's API.
    It is also :class:`cluster.agent.pulls.Conversations`: lists come whole, oldest first.

    ``host`` is where its git lives (``github.com``, or the enterprise host): the one host its
    token goes to, and the one a task's repo URL may name. A missing token is
    :class:`SecretMissing` here, at construction, not at first use.
    ``github_options`` go to :class:`github.Github` (tests pass the throttling knobs).
    """

    def __init__(
        self,
        token: Secret | None = None,
        *,
        token_file: Path | None = None,
        base_url: str = DEFAULT_API,
        environ: Mapping[str, str] | None = None,
        timeout: int = 30,
        retry: int | None = 2,
        **github_options: Any,
    ) -> None:
        self.token: Secret | None = load_token(token, token_file, environ)
        self.base_url = base_url.rstrip("/")
        self.host = forge_host(self.base_url)
        self._gh = Github(
            auth=Auth.Token(self.token.reveal()), base_url=self.base_url, timeout=timeout,
            retry=retry, **github_options,
        )
        self._repos: dict[str, Repository] = {}

    def close(self) -> None:
        self._gh.close()

    def clone_url(self, repo: str) -> str:
        if not is_slug(repo):
            return repo
        return str(self._repo(repo).clone_url)

    def issue_text(self, repo: str, number: int) -> str:
        with self._translated(f"{repo}#{number}"):
            issue = self._repo(repo).get_issue(number)
            parts = [f"Issue #{number}: {issue.title}", "", (issue.body or "").strip()]
            comments = list(issue.get_comments())
        if comments:
            parts += ["", "Comments:"]
            for item in comments:
                author = item.user.login if item.user else "someone"
                parts += ["", f"{author} wrote:", (item.body or "").strip()]
        return "\n".join(parts).strip() + "\n"

    def open_or_update_pr(self, repo: str, branch: str, base: str, title: str, body: str) -> str:
        with self._translated(f"{repo}: pull request for {branch}"):
            target = self._repo(repo)
            found = self._open_pull(target, branch)
            if found is None:
                try:
                    found = target.create_pull(base=base, head=branch, title=title, body=body)
                    return str(found.html_url)
                except GithubException as exc:
                    # Another writer opened it between our look and our create: reuse theirs.
                    found = self._open_pull(target, branch) if exc.status == 422 else None
                    if found is None:
                        raise
            found.edit(title=title, body=body)
            return str(found.html_url)

    def comment(self, repo: str, number: int, text: str) -> None:
        with self._translated(f"{repo}#{number}: comment"):
            self._repo(repo).get_issue(number).create_comment(text)

    # -- Conversations ---------------------------------------------------------------------

    def pull(self, repo: str, number: int) -> Pull:
        with self._translated(f"{repo}#{number}: pull request"):
            return to_pull(repo, self._repo(repo).get_pull(number))

    def open_pulls(self, repo: str) -> list[Pull]:
        with self._translated(f"{repo}: open pull requests"):
            found = [to_pull(repo, p) for p in self._repo(repo).get_pulls(state="open")]
        return sorted(found, key=lambda p: p.number)

    def reviews(self, repo: str, number: int) -> list[Review]:
        with self._translated(f"{repo}#{number}: reviews"):
            found = [to_review(r) for r in self._repo(repo).get_pull(number).get_reviews()]
        return sorted(found, key=lambda r: r.id)

    def review_comments(self, repo: str, number: int) -> list[LineComment]:
        with self._translated(f"{repo}#{number}: review comments"):
            pull = self._repo(repo).get_pull(number)
            found = [to_line_comment(c) for c in pull.get_review_comments()]
        return sorted(found, key=lambda c: c.id)

    def pull_comments(self, repo: str, number: int) -> list[Comment]:
        with self._translated(f"{repo}#{number}: comments"):
            found = [to_comment(c) for c in self._repo(repo).get_issue(number).get_comments()]
        return sorted(found, key=lambda c: c.id)

    def failed_checks(self, repo: str, sha: str) -> list[CheckFailure]:
        """Check runs concluded failure or timed_out, then contexts whose latest commit status
        is failure or error, on commit ``sha``."""
        with self._translated(f"{repo}@{sha[:12]}: checks"):
            commit = self._repo(repo).get_commit(sha)
            runs = failed_runs(commit.get_check_runs())
            statuses = failed_statuses(commit.get_statuses(), sha)
        return runs + statuses

    def can_write(self, repo: str, login: str) -> bool:
        if not login.strip():
            return False
        target = self._repo(repo)
        with self._translated(f"{repo}: permission of {login}"):
            try:
                permission = target.get_collaborator_permission(login)
            except GithubException as exc:
                if exc.status == 404:  # GitHub's answer for who is no collaborator (or user)
                    return False
                raise
        return permission in WRITE_PERMISSIONS

    def reply(self, repo: str, number: int, comment_id: int, text: str) -> None:
        with self._translated(f"{repo}#{number}: reply to review comment {comment_id}"):
            self._repo(repo).get_pull(number).create_review_comment_reply(comment_id, text)

    def _open_pull(self, target: Repository, branch: str) -> PullRequest | None:
        head = f"{target.owner.login}:{branch}"
        for pull in target.get_pulls(state="open", head=head):
            return pull
        return None

    def _repo(self, repo: str) -> Repository:
        repo = self._slug(repo)
        if not is_slug(repo):
            raise ForgeError(f"{repo}: GitHub needs an owner/name repo, not a URL or path")
        if repo not in self._repos:
            with self._translated(repo):
                self._repos[repo] = self._gh.get_repo(repo)
        return self._repos[repo]

    def _slug(self, repo: str) -> str:
        """``owner/name`` of a URL on this forge's host (``https://github.com/o/r.git``)."""
        if is_slug(repo) or host_of(repo) != self.host or "://" not in repo:
            return repo
        path = repo.split("://", 1)[1].partition("/")[2].removesuffix("/")
        return path.removesuffix(".git")

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except BadCredentialsException as exc:
            raise ForgeAuthError(self._say(
                f"{what}: GitHub at {self.base_url} rejected the token (HTTP {exc.status})"
            )) from exc
        except RateLimitExceededException as exc:
            wait = _retry_after(exc.headers or {})
            raise ForgeRateLimited(wait, self._say(
                f"{what}: GitHub API rate limit exceeded; retry after {wait:.0f}s"
            )) from exc
        except UnknownObjectException as exc:
            raise ForgeNotFound(self._say(
                f"{what}: not found on {self.base_url} (or the token may not see it)"
            )) from exc
        except GithubException as exc:
            raise ForgeError(self._say(
                f"{what}: GitHub answered HTTP {exc.status}: {_message(exc.data)}"
            )) from exc
        except requests.RequestException as exc:
            raise ForgeError(self._say(
                f"{what}: cannot reach {self.base_url}: {type(exc).__name__}"
            )) from exc

    def _say(self, text: str) -> str:
        return mask(text, [self.token] if self.token else [])


def _message(data: object) -> str:
    if not isinstance(data, dict):
        return str(data)[:300]
    text = str(data.get("message", ""))
    details = [
        str(e.get("message") or f"{e.get('field')} {e.get('code')}")
        for e in data.get("errors") or [] if isinstance(e, dict)
    ]
    return "; ".join([text, *details]) if details else text


def _retry_after(headers: Mapping[str, str]) -> float:
    lowered = {k.lower(): v for k, v in headers.items()}
    with contextlib.suppress(ValueError):
        if "retry-after" in lowered:
            return max(float(lowered["retry-after"]), 1.0)
        if "x-ratelimit-reset" in lowered:
            return max(float(lowered["x-ratelimit-reset"]) - time.time(), 1.0)
    return DEFAULT_RATE_LIMIT_WAIT
