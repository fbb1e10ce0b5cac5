"""What ``main``'s history says that its tree may no longer show.

Two facts are read from the log rather than from the tip's tree: when each task file first
landed (the age half of the claim order) and which ids a fold ever archived. The second is
the state repo's defence without its hook: a commit on ``main`` may drop ``archive/`` or bring
a finished task's file back (a merge of an old ``main``, a plain-path writer), but it cannot
remove the fold commits already in its history, so an id archived there is never run again.

Paths come NUL-separated (``-z``): a name git would quote (``tasks/nl\\n.yaml``) is read as it
is. Merges are compared with their first parent, as a fold is written (the archived files are
new against ``main`` before it), and every branch of history is followed (``--full-history``):
a merge that takes an old tree is not allowed to hide the folds behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import GitError
from cluster.state.gitcmd import run_git
from cluster.state.gitobj import ObjectStore
from cluster.state.ids import ARCHIVE_DIR
from cluster.state.treediff import diff_trees, lookup

# Commits an ancestry question reads in process before it asks git: main moves a few commits
# between two readings, so the walk decides almost every one without starting a process.
ANCESTRY_WALK = 64


@dataclass(frozen=True)
class Change:
    """``path`` as ``commit`` (committed at ``time``, with ``parents`` parents) changed it:
    ``status`` is git's letter, ``A`` added or ``D`` deleted."""

    commit: str
    time: float
    parents: int
    status: str
    path: str


def added(git_dir: Path, tip: str, prefix: str, *, since: str | None = None,
          env: Mapping[str, str] | None = None) -> Iterator[Change]:
    """Every file added under ``prefix/`` in ``tip``'s history (minus ``since``'s), newest
    commit first."""
    return changes(git_dir, tip, prefix, "A", since=since, env=env)


def changes(git_dir: Path, tip: str, prefix: str, kinds: str, *, since: str | None = None,
            env: Mapping[str, str] | None = None) -> Iterator[Change]:
    """Every file under ``prefix/`` that a commit of ``tip``'s history (minus ``since``'s)
    changed in one of the ways ``kinds`` names (git's --diff-filter letters), newest first."""
    argv = ["log", "-z", "--format=%x01%H%x02%ct%x02%P", "--name-status",
            f"--diff-filter={kinds}", "--no-renames", "--full-history",
            "--diff-merges=first-parent", tip]
    if since is not None:
        argv += ["--not", since]
    out = run_git([*argv, "--", f"{prefix}/"], git_dir=git_dir, env=env).stdout
    commit, when, parents, status = "", 0.0, 0, ""
    for token in out.split("\0"):
        if token.startswith("\x01"):
            commit, stamp, parent_list = token[1:].split("\x02")
            when, parents, status = float(stamp), len(parent_list.split()), ""
        elif not status:
            status = token.removeprefix("\n")  # git puts a newline before the list
        else:
            if commit and token.startswith(f"{prefix}/"):
                yield Change(commit, when, parents, status, token)
            status = ""


def is_ancestor(git_dir: Path, old: str, new: str, env: Mapping[str, str] | None = None,
                store: ObjectStore | None = None) -> bool:
    """Is ``old`` in ``new``'s history (``git merge-base --is-ancestor``)? With ``store``
    (reading the same objects), first by walking ``new``'s parents in process: git decides
    only when that walk neither finds ``old`` nor runs out of history within
    :data:`ANCESTRY_WALK` commits, or cannot read one."""
    walked = None if store is None else _walk(store, old, new)
    if walked is not None:
        return walked
    done = run_git(["merge-base", "--is-ancestor", old, new], git_dir=git_dir, check=False,
                   env=env)
    return done.returncode == 0


def _walk(store: ObjectStore, old: str, new: str) -> bool | None:
    """Breadth first through every parent of ``new``: True on reaching ``old``, False when
    the whole history was read without it, None (undecided) past the walk's bound."""
    seen, queue = {new}, deque([new])
    while queue:
        sha = queue.popleft()
        if sha == old:
            return True
        if len(seen) > ANCESTRY_WALK:
            return None
        try:
            parents = store.commit(sha).parents
        except GitError:
            return None  # missing, or not a commit: git's answer, whatever it is
        for parent in parents:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return False


def _archived_key(path: str) -> str | None:
    """The key of ``archive/<xx>/<key>/result[.<tip>].yaml``, else None."""
    parts = path.split("/")
    return parts[2] if len(parts) == 4 and parts[3].startswith("result") else None


class FoldLedger:
    """The ids that a fold archived anywhere in ``main``'s history, each with that fold, and
    those of them that a prune took out of ``archive/`` since (``invoke maintain``: a commit
    with one parent; a merge that drops archive entries is a rewrite, not a prune).

    Kept up to date by reading only the commits ``main`` gained since the last reading; a
    ``main`` that is no descendant of the last one (history rewritten) is read whole. Each
    reading makes new ``folded`` and ``pruned`` objects (never changed afterwards), so a
    snapshot keeps the ledger of its own ``main`` however the reader moves on.
    """

    def __init__(self, git_dir: Path, env: Mapping[str, str] | None = None,
                 store: ObjectStore | None = None) -> None:
        self.git_dir = git_dir
        self.env = env
        self.store = store  # the same objects, for ancestry walked in process
        self.folded: Mapping[str, str] = {}
        self.pruned: frozenset[str] = frozenset()
        self._main: str | None = None

    def update(self, main: str | None) -> Mapping[str, str]:
        if main == self._main:
            return self.folded
        since = self._main
        folded, pruned = dict(self.folded), set(self.pruned)
        walked = None if since is None or main is None else self._walk(since, main)
        if walked is not None:
            found: Iterable[Change] = walked
        else:
            if main is None or (since is not None and not is_ancestor(
                    self.git_dir, since, main, self.env, self.store)):
                folded, pruned, since = {}, set(), None
            found = () if main is None else changes(self.git_dir, main, ARCHIVE_DIR, "AD",
                                                     since=since, env=self.env)
        for item in found:
            key = _archived_key(item.path)
            if key is None:
                continue
            if item.status == "A":
                folded.setdefault(key, item.commit)
            elif item.parents == 1:
                pruned.add(key)
        self.folded, self.pruned, self._main = folded, frozenset(pruned), main
        return self.folded

    def _walk(self, since: str, main: str) -> list[Change] | None:
        """What ``changes`` would say of ``archive/`` for ``main`` minus ``since``, read in
        process: when ``main`` reaches ``since`` through at most :data:`ANCESTRY_WALK` commits
        of one parent each (submits, prunes; a fold merges claims: git's). None (git decides) past
        that bound, at a merge (whose other parents git's walk would follow too), or when an
        object cannot be read here."""
        if self.store is None:
            return None
        out: list[Change] = []
        sha = main
        try:
            commit = self.store.commit(sha)
            for _ in range(ANCESTRY_WALK):
                if len(commit.parents) != 1:
                    return None
                parent = commit.parents[0]
                older = self.store.commit(parent)  # read once: the next step's commit
                before = self._archive(older.tree)
                after = self._archive(commit.tree)
                for change in diff_trees(self.store, before, after, f"{ARCHIVE_DIR}/"):
                    if change.old is None or change.new is None:  # added or deleted
                        status = "A" if change.old is None else "D"
                        when = float(commit.committer_time)
                        out.append(Change(sha, when, 1, status, change.path))
                if parent == since:
                    return out
                sha, commit = parent, older
        except GitError:
            return None
        return None

    def _archive(self, tree: str) -> str | None:
        """The ``archive/`` tree of ``tree``, None when it has none (or a file by that name,
        which git's ``archive/`` pathspec would not match either)."""
        assert self.store is not None
        entry = lookup(self.store, tree, ARCHIVE_DIR)
        return entry.sha if entry is not None and entry.is_tree else None
