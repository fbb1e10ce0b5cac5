"""Which objects one side of a state session lacks, and whether a write's objects are whole.

Both ends of a session (cluster.state.session, cluster.state.sessiond) keep the set of
objects the other side is known to hold *with everything they reach*: the tips the other
side named, everything sent to it or received from it. :func:`objects_for` walks from new
tips down to that set and returns what must travel, parents before children, each tree
diffed against its commit's first parent's (a claim or a fold carries the few trees and
blobs it changed, not the repository). `closure` is the receiving end's check of a
write: every object the new tips reach is in the write or already in the repository, each of
the kind that refers to it says (git's connectivity check, done in process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from cluster.errors import GitError
from cluster.state.gitobj import OBJECT_ID, ObjectStore, parse_commit, parse_tree

GITLINK = "160000"  # a submodule's commit: never in this repository
KINDS = ("commit", "tree", "blob")
MAX_BYTES = 32 * 1024 * 1024  # of bodies at once; beyond, git carries them
# Ids a session's end takes the other side to hold; past it, only the tips it last named.
MAX_KNOWN = 200_000
Obj = tuple[str, str, bytes]  # id, kind, body


class TooMuch(Exception):
    """More than a session carries at once: the side that asked reads or writes through git."""


def objects_for(store: ObjectStore, tips: Iterable[str], known: set[str],
                limit: int) -> list[Obj]:
    """The objects that ``tips`` reach and ``known`` does not, what an object refers to
    before it (``known`` is not changed: the caller adds them once the other side has them).

    Raises TooMuch beyond ``limit`` objects (a first sync, a long history, a ref at what is
    not a commit: git's own transport is the tool), GitError when ``store`` lacks an object.
    """
    out: list[Obj] = []
    have = _Have(known)
    trees: dict[str, str] = {}  # of the commits being sent, read once by the walk
    for sha, body in _new_commits(store, tips, have, limit):
        commit = parse_commit(body)
        trees[sha] = commit.tree
        first = commit.parents[0] if commit.parents else None
        base = None if first is None else trees.get(first) or _tree_of(store, first)
        _tree(store, commit.tree, base, have, out, limit)
        out.append((sha, "commit", body))
        have.add(sha)
    return out


class _Have:
    """What the other side holds: ``known`` and what is being sent to it."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.sent: set[str] = set()
        self.size = 0  # bytes of blobs being sent

    def __contains__(self, sha: str) -> bool:
        return sha in self.sent or sha in self.known

    def add(self, sha: str) -> None:
        self.sent.add(sha)


def _new_commits(store: ObjectStore, tips: Iterable[str], known: _Have,
                 limit: int) -> list[tuple[str, bytes]]:
    """The commits ``tips`` reach down to ``known`` (id, body), each after its parents."""
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    stack: list[tuple[str, bytes | None]] = [(t, None) for t in tips if t not in known]
    while stack:
        sha, done = stack.pop()
        if done is not None:
            order.append((sha, done))
            continue
        if sha in seen or sha in known:
            continue
        kind, body = store.read(sha)
        if kind != "commit":  # not what the protocol's refs hold: git carries it
            raise TooMuch(f"{sha} is a {kind}, not a commit")
        seen.add(sha)
        if len(seen) > limit:
            raise TooMuch(f"more than {limit} commits to send")
        stack.append((sha, body))
        stack += [(p, None) for p in reversed(parse_commit(body).parents)
                  if p not in known and p not in seen]
    return order


def _tree_of(store: ObjectStore, commit: str) -> str | None:
    try:
        kind, body = store.read(commit)
    except GitError:
        return None
    return parse_commit(body).tree if kind == "commit" else None


def _tree(store: ObjectStore, sha: str, base: str | None, known: _Have, out: list[Obj],
          limit: int) -> None:
    """``sha`` and what it holds that neither ``known`` nor the tree ``base`` (which the
    other side holds whole) has, into ``out``."""
    if sha in known or sha == base:
        return
    kind, body = store.read(sha)
    if kind != "tree":
        raise GitError(["cat-file", sha], 128, f"{sha} is a {kind}, not a tree")
    before = parse_tree(store.read(base)[1]) if base else {}
    for name, entry in parse_tree(body).items():
        old = before.get(name)
        if entry.mode == GITLINK or entry.sha in known or (old is not None and old == entry):
            continue
        if entry.is_tree:
            _tree(store, entry.sha, old.sha if old is not None and old.is_tree else None,
                  known, out, limit)
        else:
            blob_kind, blob = store.read(entry.sha)
            out.append((entry.sha, blob_kind, blob))
            known.add(entry.sha)
            known.size += len(blob)
        if len(out) > limit or known.size > MAX_BYTES:
            raise TooMuch(f"more than {limit} objects or {MAX_BYTES} bytes to send")
    out.append((sha, kind, body))
    known.add(sha)


def closure(objects: Mapping[str, tuple[str, bytes]], tips: Iterable[str],
            held: Callable[[str], str | None]) -> tuple[set[str], tuple[str, str] | None]:
    """Which of ``objects`` (a write's) ``tips`` reach, and the first problem with what they
    reach (None when they are whole): an object neither in ``objects`` nor ``held`` (the
    repository's kind of it, None when it has none), one of another kind than what refers to
    it says, one that does not parse, ``(object, why)``. The repository's own objects are
    taken as whole, as git takes the objects its refs reach."""
    stack: list[tuple[str, str | None]] = [(t, None) for t in tips]
    seen: set[str] = set()
    reached: set[str] = set()
    while stack:
        sha, want = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if not OBJECT_ID.fullmatch(sha):
            return reached, (sha, "is not an object id")
        mine = objects.get(sha)
        kind = mine[0] if mine is not None else held(sha)
        if kind is None:
            return reached, (sha, "is in neither the write nor the repository")
        if want is not None and kind != want:
            return reached, (sha, f"is a {kind} where a {want} belongs")
        if mine is None:
            continue
        reached.add(sha)
        try:
            stack += _refers(kind, mine[1])
        except (ValueError, IndexError, UnicodeDecodeError):
            return reached, (sha, f"is not a well-formed {kind}")
    return reached, None


def _refers(kind: str, body: bytes) -> list[tuple[str, str | None]]:
    if kind == "commit":
        commit = parse_commit(body)
        if not commit.tree:
            raise ValueError("a commit without a tree")
        return [(commit.tree, "tree"), *((p, "commit") for p in commit.parents)]
    if kind == "tree":
        return [(e.sha, "tree" if e.is_tree else "blob")
                for e in parse_tree(body).values() if e.mode != GITLINK]
    return []
