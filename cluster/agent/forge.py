"""Where target repos live: the Forge protocol, its errors and repo names (forges: the
offline LocalForge in forge_local, GitHub in forge_github)."""

from __future__ import annotations

import hashlib
import re
from typing import ClassVar, Protocol

from cluster.agent.executors.base import RateLimited
from cluster.errors import ClusterError
from cluster.secret import Secret
from cluster.state.statuses import PauseCause

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


class ForgeError(ClusterError):
    """The forge refused or failed a request; the message says which and on which repo."""


class ForgeAuthError(ForgeError):
    """The forge rejected the credentials (the token is wrong, expired or lacks a scope)."""


class ForgeNotFound(ForgeError):
    """The repo, issue or pull request does not exist, or the token may not see it."""


class ForgeRateLimited(RateLimited, ForgeError):
    """The forge's API rate limit is spent: the one :class:`RateLimited`, with what differs. It
    is a ForgeError too; its pause stays the agent's own (no model credential is shared:
    docs/agent.md); its message is the forge's own, which already names the wait."""

    cause: ClassVar[PauseCause] = "forge_limit"

    @staticmethod
    def _message(retry_after: float, detail: str) -> str:
        return detail


class Forge(Protocol):
    """Resolves repos, reads issues and proposes branches as pull requests.

    ``token`` authenticates git over https to the forge's ``host`` (``host[:port]``), and to
    no other (``None``: no credentials). A forge with a host takes ``owner/name`` or URLs on
    that host only (cluster.agent.repos); one without takes what the agent's settings allow.
    """

    token: Secret | None
    host: str | None

    def clone_url(self, repo: str) -> str: ...

    def issue_text(self, repo: str, number: int) -> str: ...

    def open_or_update_pr(
        self, repo: str, branch: str, base: str, title: str, body: str
    ) -> str: ...

    def comment(self, repo: str, number: int, text: str) -> None: ...


def is_slug(repo: str) -> bool:
    """``owner/name`` (a forge's name for a repo) rather than a git URL or path.

    Paths meant as relative must start with ``./``: ``repos/x`` reads as owner ``repos``.
    """
    return bool(_SLUG.fullmatch(repo)) and not repo.endswith(".git")  # whole: no trailing newline


def repo_slug(repo: str) -> str:
    """A file-name-safe, unique name for any repo string: its last part plus a short hash."""
    name = repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-")[:40] or "repo"
    return f"{name}-{hashlib.sha1(repo.encode(), usedforsecurity=False).hexdigest()[:8]}"
