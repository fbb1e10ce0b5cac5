"""Which files a commit changed, read from trees without a work tree (merges count once)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cluster.errors import GitError
from cluster.state.gitobj import Entry, ObjectStore, Tree


@dataclass(frozen=True)
class Change:
    """One file of a commit: ``old``/``new`` are blob ids, None when absent on that side."""

    path: str
    old: str | None
    new: str | None


def diff_trees(store: ObjectStore, old: str | None, new: str | None) -> list[Change]:
    return list(_diff(store, old, new, ""))


def _diff(store: ObjectStore, old: str | None, new: str | None, prefix: str) -> Iterator[Change]:
    if old == new:
        return
    before: Tree = store.tree(old) if old else {}
    after: Tree = store.tree(new) if new else {}
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        path = f"{prefix}{name}"
        a_tree = a.sha if a is not None and a.is_tree else None
        b_tree = b.sha if b is not None and b.is_tree else None
        if a_tree or b_tree:
            yield from _diff(store, a_tree, b_tree, f"{path}/")
        a_blob = a.sha if a is not None and not a.is_tree else None
        b_blob = b.sha if b is not None and not b.is_tree else None
        if a_blob != b_blob:
            yield Change(path, a_blob, b_blob)


def lookup(store: ObjectStore, tree: str, path: str) -> Entry | None:
    """The entry at ``path`` under ``tree``, or None."""
    entries = store.tree(tree)
    head, _, rest = path.partition("/")
    entry = entries.get(head)
    if not rest or entry is None:
        return entry
    return lookup(store, entry.sha, rest) if entry.is_tree else None


def commit_changes(store: ObjectStore, sha: str,
                   side_names: frozenset[str] = frozenset()) -> list[Change]:
    """What ``sha`` itself changed: against its first parent, minus what a merge took as is
    from another parent (a path counts only when it differs from every parent). A parent whose
    tree is one file named in ``side_names`` (a claim chain a fold joins) is not compared."""
    commit = store.commit(sha)
    if not commit.parents:
        return diff_trees(store, None, commit.tree)
    first = store.commit(commit.parents[0]).tree
    changes = diff_trees(store, first, commit.tree)
    for parent in commit.parents[1:]:
        try:
            other = store.commit(parent).tree
            entries = store.tree(other)
        except GitError:
            continue
        if len(entries) == 1 and set(entries) <= side_names:
            continue
        changes = [c for c in changes if _blob_at(store, other, c.path) != c.new]
    return changes


def _blob_at(store: ObjectStore, tree: str, path: str) -> str | None:
    entry = lookup(store, tree, path)
    return entry.sha if entry is not None and not entry.is_tree else None
