"""One attempt's clone of the target repo on the stable branch ``cluster/<task>``, via GitPython."""

from __future__ import annotations

import base64
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from git import Repo
from git.exc import GitCommandError

from cluster.errors import ClusterError, GitError
from cluster.secret import Secret, mask

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class WorkspaceError(ClusterError):
    """The workspace could not be prepared or published; the message names repo and branch."""


class PushRejected(WorkspaceError):
    """The remote branch moved since this attempt read it: someone else pushed to it."""


@dataclass(frozen=True)
class GitIdentity:
    name: str = "claude-cluster"
    email: str = "claude-cluster@localhost"


@dataclass
class Workspace:
    """A prepared clone. ``remote_head`` is the branch's value on the remote as last seen;
    ``resumed`` says the branch already existed there (a retry)."""

    path: Path
    repo: Repo
    url: str
    branch: str
    base_sha: str
    start: str
    remote_head: str | None
    config: bytes
    token: Secret | None
    resumed: bool

    def close(self) -> None:
        self.repo.close()


@dataclass(frozen=True)
class Commit:
    head: str
    changed: bool


def branch_for(task_id: str) -> str:
    return f"cluster/{task_id}"


def auth_env(url: str, token: Secret | None) -> dict[str, str]:
    """Environment for our git processes: no prompts, no hooks, and the token (if any) as an
    ``http.<origin>.extraHeader`` scoped to the remote's origin: never in a URL or .git/config.

    The token goes only over https, or plain http to a loopback address.
    """
    pairs = [("core.hooksPath", "/dev/null")]
    parts = urlsplit(url)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in LOOPBACK
    )
    if token and secure and parts.netloc and "@" not in parts.netloc:
        basic = base64.b64encode(f"x-access-token:{token.reveal()}".encode()).decode()
        pairs.append((f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
                      f"Authorization: Basic {basic}"))
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def prune(root: Path, older_than_hours: float, now: float | None = None) -> list[Path]:
    """Remove workspaces under ``root`` untouched for longer than ``older_than_hours``."""
    cutoff = (time.time() if now is None else now) - older_than_hours * 3600
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.is_dir() and path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class Workspaces:
    """Workspaces live at ``<workdir>/workspaces/<task>-a<attempt>``.

    ``depth`` makes fetches shallow (a retry fetches its branch to the same depth; pushes from
    a shallow clone work because the remote has the boundary commits).
    """

    def __init__(
        self, workdir: Path, *, identity: GitIdentity | None = None, depth: int | None = None
    ) -> None:
        self.root = workdir / "workspaces"
        self.identity = identity or GitIdentity()
        self.depth = depth

    def path_for(self, task_id: str, attempt: int) -> Path:
        return self.root / f"{task_id}-a{attempt}"

    def prepare(
        self, url: str, task_id: str, attempt: int, base: str, *,
        token: Secret | None = None, timeout: float | None = None,
    ) -> Workspace:
        """Fetch ``base`` and, on a retry, the existing branch; check the branch out."""
        path = self.path_for(task_id, attempt)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        branch = branch_for(task_id)
        repo = Repo.init(path)
        ident = self.identity
        repo.git.update_environment(
            **auth_env(url, token),
            GIT_AUTHOR_NAME=ident.name, GIT_AUTHOR_EMAIL=ident.email,
            GIT_COMMITTER_NAME=ident.name, GIT_COMMITTER_EMAIL=ident.email,
        )
        try:
            repo.create_remote("origin", url)
            heads = self._remote_heads(repo, token, timeout, base, branch)
            if base not in heads:
                raise WorkspaceError(f"{_shown(url)}: base branch {base!r} not found")
            refspecs = [f"+refs/heads/{base}:refs/remotes/origin/{base}"]
            if branch in heads:
                refspecs.append(f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
            depth = [f"--depth={self.depth}"] if self.depth else []
            _git(repo, token, timeout, "fetch", "--no-tags", *depth, "origin", *refspecs)
            start = heads.get(branch, heads[base])
            _git(repo, token, timeout, "checkout", "-q", "--no-track", "-B", branch, start)
        except BaseException:
            repo.close()
            raise
        config = (path / ".git" / "config").read_bytes()
        return Workspace(path, repo, url, branch, heads[base], start, heads.get(branch),
                         config, token, resumed=branch in heads)

    def commit(self, ws: Workspace, message: str) -> Commit:
        """Stage everything and commit it; ``changed`` also counts the executor's own commits."""
        # The executor may have edited .git/config (filters, fsmonitor: commands git would run
        # here, in the agent's environment): put ours back before git reads it.
        (ws.path / ".git" / "config").write_bytes(ws.config)
        _git(ws.repo, ws.token, None, "add", "-A")
        staged = ws.repo.git.execute(
            ["git", "diff", "--cached", "--quiet"], with_exceptions=False,
            with_extended_output=True,
        )[0]
        if staged:
            _git(ws.repo, ws.token, None, "commit", "-q", "--no-verify", "-m", message)
        head = _git(ws.repo, ws.token, None, "rev-parse", "HEAD")
        return Commit(head, head != ws.start)

    def has_work(self, ws: Workspace) -> bool:
        """Whether the branch has commits that ``base`` lacks: something to propose."""
        ahead = _git(ws.repo, ws.token, None, "rev-list", "--max-count=1", f"{ws.base_sha}..HEAD")
        return bool(ahead)

    def push(self, ws: Workspace, timeout: float | None = None) -> str:
        """Push HEAD to the branch, leased on the value this attempt saw; never a blind force."""
        head = _git(ws.repo, ws.token, None, "rev-parse", "HEAD")
        if head == ws.remote_head:
            return head
        ref = f"refs/heads/{ws.branch}"
        lease = f"--force-with-lease={ref}:{ws.remote_head or ''}"
        try:
            _git(ws.repo, ws.token, timeout, "push", "--porcelain", lease, "origin",
                 f"HEAD:{ref}")
        except GitError as exc:
            if "rejected" in exc.stderr or "stale info" in exc.stderr:
                raise PushRejected(
                    f"{_shown(ws.url)}: push to {ws.branch} rejected: the branch moved since "
                    f"this attempt read it ({ws.remote_head or 'absent'})"
                ) from exc
            raise
        ws.remote_head = head
        return head

    def remove(self, ws: Workspace) -> None:
        ws.close()
        shutil.rmtree(ws.path, ignore_errors=True)

    def prune(self, older_than_hours: float) -> list[Path]:
        return prune(self.root, older_than_hours)

    def _remote_heads(
        self, repo: Repo, token: Secret | None, timeout: float | None, *names: str
    ) -> dict[str, str]:
        out = _git(repo, token, timeout, "ls-remote", "origin",
                   *(f"refs/heads/{name}" for name in names))
        heads = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            heads[ref.removeprefix("refs/heads/")] = sha
        return heads


def _git(repo: Repo, token: Secret | None, timeout: float | None, *args: str) -> str:
    """Run one git command in ``repo``; failures become :class:`GitError` with secrets masked."""
    secrets = [token] if token else []
    if timeout is not None and timeout <= 0:
        raise WorkspaceError(f"git {args[0]}: no time left before the task timeout")
    try:
        out = repo.git.execute(["git", *args], kill_after_timeout=timeout)
    except GitCommandError as exc:
        status = exc.status if isinstance(exc.status, int) else -1
        detail = f"{exc.stderr or ''}\n{exc.stdout or ''}".strip()
        raise GitError(["git", *args], status, mask(detail, secrets)) from exc
    return str(out).strip()


def _shown(url: str) -> str:
    """A URL fit for messages: any user:password part removed."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url
