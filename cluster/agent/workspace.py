"""One attempt's checkout of the target repo on the stable branch ``cluster/<task>``.

Layout: ``<root>/<task>-a<N>/tree`` is the work tree (what executors see and may write) and
``<root>/<task>-a<N>/git`` its git directory, outside the tree. Every git call names both
(``--git-dir``, ``--work-tree``) and runs sealed (cluster.state.gitcmd): nothing the tree
holds, a ``.git`` there included, is ever read as git's settings or run.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cluster.agent.repos import token_goes_to
from cluster.agent.secretscan import scan_range
from cluster.errors import ClusterError, GitError, RemoteUnavailable
from cluster.secret import Secret, mask, shown_url
from cluster.state.gitcmd import run_git, run_git_bytes, transport_config

# Never pushed, whatever the task wrote: the Claude Code CLI's own files and caches. An
# agent's ``push_ignore`` adds more (gitignore syntax, written to the git dir's info/exclude).
NEVER_PUSHED = (
    ".claude.json", ".claude.json.backup", ".claude/projects/", ".claude/todos/",
    ".claude/shell-snapshots/", ".claude/statsig/", ".claude/settings.local.json",
    "__pycache__/", "*.py[cod]", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/",
    ".hypothesis/", ".coverage",
)
GITLINK = b"160000"


class WorkspaceError(ClusterError):
    """The workspace could not be prepared or published; the message names repo and branch."""


class PushRejected(WorkspaceError):
    """The remote branch moved since this attempt read it: someone else pushed to it."""


class SecretInChanges(WorkspaceError):
    """The push would publish a secret; ``where`` names the file (or commit), never the value."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"secret in changes: {where}")


@dataclass(frozen=True)
class GitIdentity:
    name: str = "claude-cluster"
    email: str = "claude-cluster@localhost"


@dataclass(frozen=True)
class Git:
    """The sealed git of one workspace. The token (if any) is added to each command as an
    ``http.<origin>.extraHeader``, only for the forge's own host: never in a URL or a file."""

    git_dir: Path
    work_tree: Path
    url: str
    token: Secret | None = None
    token_host: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, timeout: float | None = None, check: bool = True) -> str:
        return self.run(*args, timeout=timeout, check=check)[1]

    def run(self, *args: str, timeout: float | None = None,
            check: bool = True) -> tuple[int, str]:  # fmt: skip
        if timeout is not None and timeout <= 0:
            raise WorkspaceError(f"git {args[0]}: no time left before the task timeout")
        config = [*transport_config(self.url), *auth_config(self.url, self.token,
                                                             self.token_host)]
        try:
            done = run_git(args, git_dir=self.git_dir, work_tree=self.work_tree,
                           cwd=self.git_dir.parent, check=False, timeout=timeout,
                           env=self.env, config=config)  # fmt: skip
        except RemoteUnavailable as exc:
            raise WorkspaceError(f"{shown_url(self.url)}: {exc}") from exc
        if check and done.returncode != 0:
            secrets = [self.token] if self.token else []
            shown = ["git", *(shown_url(a) if a == self.url else a for a in args)]
            detail = f"{done.stderr}\n{done.stdout}".strip()
            raise GitError(shown, done.returncode, mask(detail, secrets))
        return done.returncode, done.stdout.strip()


@dataclass
class Workspace:
    """A prepared checkout. ``path`` is the work tree; ``remote_head`` is the branch's value
    on the remote as last seen; ``resumed`` says the branch already existed there (a retry,
    or a pull request's branch); ``since`` is the commit whose successors are this task's
    work (``base_sha``, or where a follow-up found its pull request's branch)."""

    path: Path
    git: Git
    branch: str
    base_sha: str
    start: str
    remote_head: str | None
    resumed: bool
    since: str = ""

    def __post_init__(self) -> None:
        self.since = self.since or self.base_sha

    @property
    def git_dir(self) -> Path:
        return self.git.git_dir

    @property
    def url(self) -> str:
        return self.git.url

    @property
    def root(self) -> Path:
        """The attempt's directory: ``tree`` and ``git`` side by side."""
        return self.path.parent

    def close(self) -> None:
        """Nothing to release: every git call is a process of its own."""


@dataclass(frozen=True)
class Commit:
    head: str
    changed: bool


def branch_for(task_id: str) -> str:
    return f"cluster/{task_id}"


def auth_config(url: str, token: Secret | None, host: str | None) -> list[tuple[str, str]]:
    """The token as a header scoped to ``url``'s origin, when ``url`` is on ``host`` (the
    forge's) over https or loopback http; no redirects are followed with it."""
    if token is None or not token.reveal() or not token_goes_to(url, host):
        return []
    parts = urlsplit(url)
    basic = base64.b64encode(f"x-access-token:{token.reveal()}".encode()).decode()
    return [(f"http.{parts.scheme}://{parts.netloc}/.extraHeader", f"Authorization: Basic {basic}"),
            ("http.followRedirects", "false")]  # fmt: skip


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
    """Workspaces live at ``<workdir>/workspaces/<task>-a<attempt>/{tree,git}``.

    ``depth`` makes fetches shallow (a retry fetches its branch to the same depth; pushes from
    a shallow clone work because the remote has the boundary commits). Every push is scanned
    first for ``secrets`` and token shapes (cluster.agent.secretscan); ``ignore`` adds
    never-pushed patterns to :data:`NEVER_PUSHED`.
    """

    def __init__(
        self, workdir: Path, *, identity: GitIdentity | None = None, depth: int | None = None,
        secrets: Sequence[Secret] = (), ignore: Sequence[str] = (),
    ) -> None:
        self.root = workdir / "workspaces"
        self.identity = identity or GitIdentity()
        self.depth = depth
        self.secrets = secrets
        self.ignore = tuple(ignore)

    def path_for(self, task_id: str, attempt: int) -> Path:
        """The work tree of this attempt."""
        return self.root / f"{task_id}-a{attempt}" / "tree"

    def prepare(
        self, url: str, task_id: str, attempt: int, base: str, *,
        token: Secret | None = None, token_host: str | None = None,
        timeout: float | None = None, branch: str | None = None, since: str | None = None,
    ) -> Workspace:
        """Fetch ``base`` and, on a retry, the existing branch; check the branch out. The
        token goes only to ``token_host`` (the forge's host).

        ``branch`` (a follow-up's: its pull request's) replaces ``cluster/<task_id>`` and must
        exist on the remote; the work is then what comes after ``since`` (the head the
        follow-up was made for), or after the branch's remote head when ``since`` is None."""
        tree = self.path_for(task_id, attempt)
        shutil.rmtree(tree.parent, ignore_errors=True)
        tree.mkdir(parents=True)
        git = Git(tree.parent / "git", tree, url, token, token_host, self._identity_env())
        self._init(git)
        existing, branch = branch is not None, branch or branch_for(task_id)
        heads = self._remote_heads(git, timeout, base, branch)
        if base not in heads:
            raise WorkspaceError(f"{shown_url(url)}: base branch {base!r} not found")
        if existing and branch not in heads:
            raise WorkspaceError(f"{shown_url(url)}: the pull request's branch {branch} is gone")
        refspecs = [f"+refs/heads/{base}:refs/remotes/origin/{base}"]
        if branch in heads:
            refspecs.append(f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        depth = [f"--depth={self.depth}"] if self.depth else []
        git("fetch", "--no-tags", *depth, "--end-of-options", url, *refspecs, timeout=timeout)
        start = heads.get(branch, heads[base])
        git("checkout", "-q", "--no-track", "-B", branch, start, timeout=timeout)
        ws = Workspace(tree, git, branch, heads[base], start, heads.get(branch),
                       resumed=branch in heads)
        if existing:
            ws.since = since or start
            self._reachable(ws, timeout)
        return ws

    def commit(self, ws: Workspace, message: str) -> Commit:
        """Stage everything and commit it; ``changed`` also counts the executor's own commits."""
        self._pin_gitlinks(ws.git)
        ws.git("add", "-A")
        if ws.git.run("diff", "--cached", "--quiet", check=False)[0]:
            ws.git("commit", "-q", "--no-verify", "-m", message)
        head = ws.git("rev-parse", "HEAD")
        return Commit(head, head != ws.start)

    def has_work(self, ws: Workspace) -> bool:
        """Whether the branch has commits beyond ``since`` (``base``, or the follow-up's head):
        something to propose."""
        return bool(ws.git("rev-list", "--max-count=1", f"{ws.since}..HEAD"))

    def changed_files(self, ws: Workspace) -> list[str]:
        """The paths this task's commits change: ``since..HEAD``."""
        out = ws.git("diff", "--name-only", "-z", f"{ws.since}..HEAD")
        return [path for path in out.split("\0") if path]

    def push(self, ws: Workspace, timeout: float | None = None) -> str:
        """Push HEAD to the branch, leased on the value this attempt saw; never a blind force,
        and never what holds a secret (:class:`SecretInChanges`)."""
        head = ws.git("rev-parse", "HEAD")
        if head == ws.remote_head:
            return head
        found = scan_range(ws.git_dir, ws.remote_head or ws.base_sha, head, self.secrets)
        if found is not None:
            raise SecretInChanges(found.where)
        ref = f"refs/heads/{ws.branch}"
        lease = f"--force-with-lease={ref}:{ws.remote_head or ''}"
        try:
            ws.git("push", "--porcelain", "--no-verify", lease, "--end-of-options", ws.url,
                   f"{head}:{ref}", timeout=timeout)
        except GitError as exc:
            if "rejected" in exc.stderr or "stale info" in exc.stderr:
                raise PushRejected(
                    f"{shown_url(ws.url)}: push to {ws.branch} rejected: the branch moved since "
                    f"this attempt read it ({ws.remote_head or 'absent'})"
                ) from exc
            raise
        ws.remote_head = head
        return head

    def remove(self, ws: Workspace) -> None:
        shutil.rmtree(ws.root, ignore_errors=True)

    def prune(self, older_than_hours: float) -> list[Path]:
        return prune(self.root, older_than_hours)

    def _identity_env(self) -> dict[str, str]:
        ident = self.identity
        return {"GIT_AUTHOR_NAME": ident.name, "GIT_AUTHOR_EMAIL": ident.email,
                "GIT_COMMITTER_NAME": ident.name, "GIT_COMMITTER_EMAIL": ident.email}

    def _init(self, git: Git) -> None:
        """A git dir of our own making: no templates, not bare (the sandbox shows it at
        ``tree/.git``, where a model's ``git status`` finds it), the never-pushed patterns."""
        run_git(["init", "-q", "--bare", "--template=", str(git.git_dir)], cwd=git.git_dir.parent)
        run_git(["config", "core.bare", "false"], git_dir=git.git_dir)
        (git.git_dir / "info").mkdir(exist_ok=True)
        lines = [line.strip() for entry in self.ignore for line in entry.splitlines()]
        patterns = ["# never pushed (cluster.agent.workspace)", *NEVER_PUSHED, *filter(None, lines)]
        (git.git_dir / "info" / "exclude").write_text("\n".join(patterns) + "\n")

    def _pin_gitlinks(self, git: Git) -> None:
        """Mark every gitlink skip-worktree: ``add -A`` would otherwise run ``git status`` in
        the submodule's directory, with whatever settings a task wrote into its ``.git``."""
        raw = run_git_bytes(["ls-files", "-s", "-z"], git_dir=git.git_dir,
                            work_tree=git.work_tree, env=git.env)  # fmt: skip
        links = [entry.split(b"\t", 1)[1] for entry in raw.split(b"\0")
                 if entry.startswith(GITLINK + b" ") and b"\t" in entry]  # fmt: skip
        if links:
            run_git_bytes(["update-index", "--skip-worktree", "-z", "--stdin"],
                          git_dir=git.git_dir, work_tree=git.work_tree, env=git.env,
                          input_bytes=b"\0".join(links) + b"\0")  # fmt: skip

    def _reachable(self, ws: Workspace, timeout: float | None) -> None:
        """Fetch ``since`` when the branch's (shallow) history does not reach it: ``since..HEAD``
        needs it; a commit the remote no longer has fails naming it."""
        if ws.git.run("cat-file", "-e", f"{ws.since}^{{commit}}", check=False)[0] == 0:
            return
        try:
            ws.git("fetch", "--no-tags", "--depth=1", "--end-of-options", ws.url, ws.since,
                   timeout=timeout)
        except GitError as exc:
            raise WorkspaceError(f"{shown_url(ws.url)}: {ws.since} (the head of {ws.branch} this "
                                 f"follow-up was made for) cannot be fetched") from exc

    def _remote_heads(self, git: Git, timeout: float | None, *names: str) -> dict[str, str]:
        out = git("ls-remote", "--end-of-options", git.url,
                  *(f"refs/heads/{name}" for name in names), timeout=timeout)
        heads = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            heads[ref.removeprefix("refs/heads/")] = sha
        return heads

