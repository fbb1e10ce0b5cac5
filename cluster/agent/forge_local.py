"""The offline forge: plain git remotes, pull requests and their conversations as files."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from cluster.agent.forge import ForgeError, ForgeNotFound, is_slug, repo_slug
from cluster.agent.pulls import CheckFailure, Comment, LineComment, Pull, Review, ReviewState
from cluster.atomicfile import write_atomic
from cluster.errors import GitError, RemoteUnavailable
from cluster.secret import Secret
from cluster.state.gitcmd import run_git, transport_config

LS_REMOTE_TIMEOUT = 60.0
T = TypeVar("T")
LOCK_NAME = ".lock"  # a local forge repo's lock file: no branch record starts with a dot


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # 0600: the mode these records always had (mkstemp's), now said out loud.
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)


class LocalForge:
    """Plain git remotes, offline: a pull request and its conversation are files on disk.

    A pull request is the JSON record ``<records>/<repo-slug>/<branch>.json`` (its URL is the
    record's ``file://`` URL); an open record for the same branch is updated in place, never
    duplicated, and keeps its number, which is the repo's next free one when first opened
    (under the repo's lock file, so concurrent agents never share one). Its conversation is
    JSON lines beside it, oldest first, ids unique per repo: ``reviews/<number>.jsonl`` (one
    review with its line comments a line), ``review-comments/<number>.jsonl`` (replies) and
    ``comments/<number>.jsonl``. Writes are atomic or fsynced appends; an unreadable line is
    skipped. ``owner/name`` repos resolve to ``<repos_root>/owner/name.git`` (or
    ``.../name``) when a root is given. The agents write as :attr:`login`; people (and the
    demo) review through :meth:`add_review` and :meth:`add_comment`.
    """

    token: Secret | None = None
    host: str | None = None
    login: str = "local"

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
        return self._folder(repo) / f"{branch}.json"

    def open_or_update_pr(self, repo: str, branch: str, base: str, title: str, body: str) -> str:
        head = self._remote_head(repo, branch)
        path = self.record_path(repo, branch)
        with self._locked(repo):
            now = time.time()
            found = _record(path) if path.exists() else {}
            if found is None:
                raise ForgeError(f"{repo}: the pull-request record {path} is unreadable; "
                                 "repair or remove it")
            record = found
            number = record.get("number")
            if not _is_id(number):
                number = 1 + max((n for n, _ in self._records(repo)), default=0)
            if record.get("state") != "open":  # a reopened branch keeps its number
                record = {"created": now, "state": "open"}
            record.update(repo=repo, number=number, head_branch=branch, base=base, title=title,
                          body=body, head=head, updated=now)
            write_json_atomic(path, record)
        return path.resolve().as_uri()

    # Conversations: what intake and the follow-up rounds read and write.

    def pull(self, repo: str, number: int) -> Pull:
        """Pull request ``number``; its ``head_sha`` is the branch's tip now (as a forge shows
        it after a push), the record's head when the branch is gone."""
        found = [(r, p) for n, (r, p) in self._records(repo) if n == number]
        if not found:
            raise ForgeNotFound(f"{repo}#{number}: no such pull request in {self._folder(repo)}")
        # Records from before numbering all say 1: the open one, else the latest, is #1.
        record, path = max(found, key=lambda f: (f[0].get("state") == "open",
                                                 _number(f[0].get("updated"))))
        heads = self._remote_heads(repo, f"refs/heads/{record['head_branch']}")
        return self._pull(repo, number, record, path, heads)

    def open_pulls(self, repo: str) -> list[Pull]:
        found = [(n, r, p) for n, (r, p) in self._records(repo) if r.get("state") == "open"]
        if not found:
            return []
        heads = self._remote_heads(repo)
        return [self._pull(repo, n, r, p, heads) for n, r, p in sorted(found, key=lambda f: f[0])]

    def reviews(self, repo: str, number: int) -> list[Review]:
        return [review for review, _ in self._reviews(repo, number)]

    def review_comments(self, repo: str, number: int) -> list[LineComment]:
        comments = [c for _, inline in self._reviews(repo, number) for c in inline]
        comments += _parsed(self._file(repo, "review-comments", number), _LINE_COMMENT)
        return sorted(comments, key=lambda c: c.id)

    def pull_comments(self, repo: str, number: int) -> list[Comment]:
        comments: list[Comment] = []
        for position, entry in _entries(self._file(repo, "comments", number)):
            if "id" not in entry:  # from before ids: the line's position, by the agent, at "at"
                entry = {"id": position, "author": self.login,
                         "created_at": entry.get("at", 0.0), **entry}
            comments += _validated(_COMMENT, entry)
        return sorted(comments, key=lambda c: c.id)

    def failed_checks(self, repo: str, sha: str) -> list[CheckFailure]:
        return []  # offline there are no checks: nothing runs on a pushed branch

    def can_write(self, repo: str, login: str) -> bool:
        """Everyone may: whoever writes these files is the local operator, who is trusted
        (they can push to the repo and edit the state repo anyway)."""
        return True

    def reply(self, repo: str, number: int, comment_id: int, text: str) -> None:
        self.add_reply(repo, number, comment_id, self.login, text)

    def comment(self, repo: str, number: int, text: str) -> None:
        self._append_comment(repo, number, self.login, text)

    # What people (and the demo) write.

    def add_review(self, repo: str, number: int, author: str, state: ReviewState, body: str,
                   comments: Sequence[tuple[str, int, str]] = ()) -> int:
        """Submit a review of pull request ``number``'s head with line comments ``(path,
        line, body)`` on the new side of its diff (base...head, as GitHub diffs); each
        gets the diff's hunk up to its line. Returns the review's id."""
        if state not in REVIEW_STATES:
            raise ForgeError(f"{repo}#{number}: review state {state!r} is not one of "
                             f"{', '.join(REVIEW_STATES)}")
        pull = self.pull(repo, number)
        sha, hunks = pull.head_sha, [""] * len(comments)
        if comments:
            sha, hunks = self._hunks(repo, pull, comments)
        with self._locked(repo):
            review_id = self._next_id(repo)
            now = time.time()
            inline = [LineComment(id=review_id + 1 + index, author=author, body=text, path=path,
                                  line=line, diff_hunk=hunks[index], in_reply_to=None,
                                  review_id=review_id, created_at=now)
                      for index, (path, line, text) in enumerate(comments)]
            entry = asdict(Review(id=review_id, author=author, state=state, body=body,
                                  submitted_at=now, commit_id=sha))
            _append(self._file(repo, "reviews", number),
                    {**entry, "comments": [asdict(c) for c in inline]})
        return review_id

    def add_reply(self, repo: str, number: int, comment_id: int, author: str, text: str) -> int:
        """Answer in the thread of review comment ``comment_id``: the reply's ``in_reply_to``
        is the thread's first comment, as on GitHub. Returns the reply's id."""
        comments = {c.id: c for c in self.review_comments(repo, number)}
        if comment_id not in comments:
            raise ForgeNotFound(f"{repo}#{number}: no review comment {comment_id}")
        root = comments[comments[comment_id].in_reply_to or comment_id]
        with self._locked(repo):
            reply = replace(root, id=self._next_id(repo), author=author, body=text,
                            in_reply_to=root.id, review_id=None, created_at=time.time())
            _append(self._file(repo, "review-comments", number), asdict(reply))
        return reply.id

    def add_comment(self, repo: str, number: int, author: str, body: str) -> int:
        """Comment on pull request ``number``'s conversation; returns the comment's id."""
        self.pull(repo, number)
        return self._append_comment(repo, number, author, body)

    def _append_comment(self, repo: str, number: int, author: str, body: str) -> int:
        with self._locked(repo):
            said = Comment(id=self._next_id(repo), author=author, body=body,
                           created_at=time.time())
            _append(self._file(repo, "comments", number), {**asdict(said), "at": said.created_at})
        return said.id

    # Files.

    def _folder(self, repo: str) -> Path:
        return self.records / repo_slug(repo)

    def _file(self, repo: str, kind: str, number: int) -> Path:
        return self._folder(repo) / kind / f"{number}.jsonl"

    @contextlib.contextmanager
    def _locked(self, repo: str) -> Iterator[None]:
        """The repo's lock (``flock`` on ``.lock``, released however its holder ends): numbers
        and ids are chosen and written under it."""
        folder = self._folder(repo)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _records(self, repo: str) -> list[tuple[int, tuple[dict[str, Any], Path]]]:
        """The readable pull-request records of ``repo`` with their numbers."""
        found = []
        for path in sorted(self._folder(repo).rglob("*.json")):
            record = None if path.name.startswith(".") else _record(path)  # dot: a temp file
            if record is not None and _is_id(record.get("number")) \
                    and isinstance(record.get("head_branch"), str):
                found.append((record["number"], (record, path)))
        return found

    def _reviews(self, repo: str, number: int) -> list[tuple[Review, list[LineComment]]]:
        found = []
        for _, entry in _entries(self._file(repo, "reviews", number)):
            for review in _validated(_REVIEW, entry):
                raw = entry.get("comments")
                inline = [c for item in (raw if isinstance(raw, list) else [])
                          for c in _validated(_LINE_COMMENT, item) if c.review_id == review.id]
                found.append((review, inline))
        return found

    def _next_id(self, repo: str) -> int:
        """One more than any id in the repo's conversations (call under :meth:`_locked`)."""
        highest = 0
        for path in self._folder(repo).glob("*/*.jsonl"):
            for position, entry in _entries(path):
                ids = [entry.get("id", position)]
                comments = entry.get("comments")
                if isinstance(comments, list):
                    ids += [c.get("id") for c in comments if isinstance(c, dict)]
                highest = max([highest, *(i for i in ids if _is_id(i))])
        return highest + 1

    # Git.

    def _pull(self, repo: str, number: int, record: dict[str, Any], path: Path,
              heads: dict[str, str]) -> Pull:
        branch = record["head_branch"]
        return Pull(repo=repo, number=number, url=path.resolve().as_uri(), head_branch=branch,
                    head_sha=heads.get(branch, str(record.get("head", ""))),
                    base=str(record.get("base", "main")),
                    state="open" if record.get("state") == "open" else "closed",
                    author=self.login)

    def _remote_head(self, repo: str, branch: str) -> str:
        head = self._remote_heads(repo, f"refs/heads/{branch}").get(branch)
        if head is None:
            raise ForgeError(f"{repo}: branch {branch} is not on the remote; push it first")
        return head

    def _remote_heads(self, repo: str, pattern: str = "refs/heads/*") -> dict[str, str]:
        url = self.clone_url(repo)
        try:
            # cwd "/": no repository around the agent's own cwd is discovered and read.
            out = run_git(["ls-remote", "--end-of-options", url, pattern],
                          cwd=Path("/"), timeout=LS_REMOTE_TIMEOUT,
                          config=transport_config(url)).stdout
        except (GitError, RemoteUnavailable) as exc:
            detail = exc.stderr if isinstance(exc, GitError) else str(exc)
            raise ForgeError(f"{repo}: cannot read {pattern}: {detail}") from exc
        heads = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    def _hunks(self, repo: str, pull: Pull,
               comments: Sequence[tuple[str, int, str]]) -> tuple[str, list[str]]:
        """The head commit the diff is of, and each comment's diff hunk up to its line."""
        url = self.clone_url(repo)
        with tempfile.TemporaryDirectory(prefix="cluster-forge-") as tmp:
            git_dir = Path(tmp) / "pull.git"
            try:
                run_git(["init", "-q", "--bare", str(git_dir)], cwd=Path("/"))
                run_git(["fetch", "-q", "--no-tags", "--end-of-options", url,
                         f"+refs/heads/{pull.base}:refs/base",
                         f"+refs/heads/{pull.head_branch}:refs/head"],
                        git_dir=git_dir, timeout=LS_REMOTE_TIMEOUT, config=transport_config(url))
                sha = run_git(["rev-parse", "refs/head"], git_dir=git_dir).stdout.strip()
                diffs = {path: run_git(["diff", "--no-color", "--no-ext-diff", "--end-of-options",
                                        "refs/base...refs/head", "--", f":(literal){path}"],
                                       git_dir=git_dir).stdout
                         for path in {path for path, _, _ in comments}}
            except (GitError, RemoteUnavailable) as exc:
                detail = exc.stderr if isinstance(exc, GitError) else str(exc)
                raise ForgeError(f"{repo}#{pull.number}: cannot diff {pull.base}..."
                                 f"{pull.head_branch}: {detail}") from exc
        hunks = []
        for path, line, _ in comments:
            hunk = hunk_at(diffs[path], line)
            if hunk is None:
                raise ForgeError(f"{repo}#{pull.number}: line {line} of {path} is not in the "
                                 "pull request's diff")
            hunks.append(hunk)
        return sha, hunks


def hunk_at(diff: str, line: int) -> str | None:
    """The hunk of a one-file ``diff`` holding new-side ``line``, from its ``@@`` header up to
    that line (GitHub's ``diff_hunk``); None when the line is in no hunk."""
    hunk: list[str] = []
    new = 0
    for text in diff.splitlines():
        header = _HUNK.match(text)
        if header:
            hunk, new = [text], int(header.group(1))
            continue
        if not hunk or text.startswith("\\"):  # before the first hunk; "\ No newline ..."
            if hunk:
                hunk.append(text)
            continue
        hunk.append(text)
        if text.startswith(("+", " ")):
            if new == line:
                return "\n".join(hunk)
            new += 1
    return None


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
REVIEW_STATES: tuple[str, ...] = get_args(ReviewState)
_REVIEW: TypeAdapter[Review] = TypeAdapter(Review)
_LINE_COMMENT: TypeAdapter[LineComment] = TypeAdapter(LineComment)
_COMMENT: TypeAdapter[Comment] = TypeAdapter(Comment)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSON-lines file with their line numbers (from 1); lines that are
    not one (a torn append, a hand edit gone wrong) are skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for position, raw in enumerate(lines, 1):
        try:
            entry = json.loads(raw)
        except ValueError:  # UnicodeDecodeError is one
            continue
        if isinstance(entry, dict):
            found.append((position, entry))
    return found


def _validated(adapter: TypeAdapter[T], entry: object) -> list[T]:
    """``entry`` as ``T`` (a list of one), or nothing when it does not have T's shape or
    its id is not a positive int. (Pydantic's lax mode: a hand-written ``"3"`` is 3.)"""
    try:
        item = adapter.validate_python(entry)
    except PydanticError:
        return []
    return [item] if _is_id(getattr(item, "id", None)) else []


def _parsed(path: Path, adapter: TypeAdapter[T]) -> list[T]:
    return [item for _, entry in _entries(path) for item in _validated(adapter, entry)]


def _append(path: Path, entry: dict[str, Any]) -> None:
    """Add one line to ``path`` and fsync it; a torn last line (a crash mid-append) is ended
    first, so it spoils only itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        handle.seek(0, os.SEEK_END)
        lead = b""
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            lead = b"" if handle.read(1) == b"\n" else b"\n"
        handle.write(lead + json.dumps(entry, sort_keys=True).encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(0o600)
