"""Which files a commit changed, read from trees without a work tree (against its first parent)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cluster.state.gitobj import Entry, ObjectStore, Tree


@dataclass(frozen=True)
class Change:
    """One file of a commit: ``old``/``new`` are blob ids, None when absent on that side."""

    path: str
    old: str | None
    new: str | None


def diff_trees(store: ObjectStore, old: str | None, new: str | None,
               prefix: str = "") -> list[Change]:
    """The files that differ between trees ``old`` and ``new`` (None: empty), paths sorted
    and under ``prefix`` (the place of these trees in a larger one, with its ``/``)."""
    return list(_diff(store, old, new, prefix))


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


def commit_changes(store: ObjectStore, sha: str) -> list[Change]:
    """What ``sha`` changed against its first parent (everything, for a root commit). A
    merge's other parents are not consulted: a path that equals some parent's is still a
    change of this commit when the first parent differs (a merge of an old ``main`` that
    takes its tree wipes ``archive/`` though every path equals the old parent's)."""
    commit = store.commit(sha)
    if not commit.parents:
        return diff_trees(store, None, commit.tree)
    return diff_trees(store, store.commit(commit.parents[0]).tree, commit.tree)
