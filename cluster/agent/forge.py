"""Where target repos live: the Forge protocol, its errors, and the offline LocalForge."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Protocol

from cluster.agent.executors.base import RateLimited
from cluster.atomicfile import write_atomic
from cluster.errors import ClusterError, GitError, RemoteUnavailable
from cluster.secret import Secret
from cluster.state.gitcmd import run_git, transport_config
from cluster.state.statuses import PauseCause

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
LS_REMOTE_TIMEOUT = 60.0


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


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # 0600: the mode these records always had (mkstemp's), now said out loud.
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)


class LocalForge:
    """Plain git remotes, offline: a "pull request" is a JSON record on disk.

    Records live at ``<records>/<repo-slug>/<branch>.json`` and their URL is its ``file://``
    URL; an open record for the same branch is updated in place, never duplicated. ``owner/name``
    repos resolve to ``<repos_root>/owner/name.git`` (or ``.../name``) when a root is given.
    """

    token: Secret | None = None
    host: str | None = None

    def __init__(self, records: Path, *, repos_root: Path | None = None) -> None:
        self.records = records
        self.repos_root = repos_root

    def clone_url(self, repo: str) -> str:
        if not is_slug(repo):
            return repo
        if self.repos_root is None:
            raise ForgeNotFound(f"{repo}: an owner/name repo needs a forge; this agent has none")
        for candidate in (self.repos_root / f"{repo}.git", self.repos_root / repo):
            if candidate.exists():
                return str(candidate)
        raise ForgeNotFound(f"{repo}: no such repo under {self.repos_root}")

    def issue_text(self, repo: str, number: int) -> str:
        raise ForgeError(f"{repo}: issue #{number} needs a forge with issues; this one has none")

    def record_path(self, repo: str, branch: str) -> Path:
        return self.records / repo_slug(repo) / f"{branch}.json"

    def open_or_update_pr(self, repo: str, branch: str, base: str, title: str, body: str) -> str:
        path = self.record_path(repo, branch)
        now = time.time()
        record: dict[str, Any] = {}
        if path.exists():
            record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("state") != "open":
            record = {"created": now, "state": "open", "number": 1}
        record.update(
            repo=repo, head_branch=branch, base=base, title=title, body=body,
            head=self._remote_head(repo, branch), updated=now,
        )
        write_json_atomic(path, record)
        return path.resolve().as_uri()

    def comment(self, repo: str, number: int, text: str) -> None:
        path = self.records / repo_slug(repo) / "comments" / f"{number}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"at": time.time(), "body": text}) + "\n")

    def _remote_head(self, repo: str, branch: str) -> str:
        url = self.clone_url(repo)
        try:
            # cwd "/": no repository around the agent's own cwd is discovered and read.
            out = run_git(["ls-remote", "--end-of-options", url, f"refs/heads/{branch}"],
                          cwd=Path("/"), timeout=LS_REMOTE_TIMEOUT,
                          config=transport_config(url)).stdout
        except (GitError, RemoteUnavailable) as exc:
            detail = exc.stderr if isinstance(exc, GitError) else str(exc)
            raise ForgeError(f"{repo}: cannot read branch {branch}: {detail}") from exc
        line = out.strip()
        if not line:
            raise ForgeError(f"{repo}: branch {branch} is not on the remote; push it first")
        return line.split()[0]
