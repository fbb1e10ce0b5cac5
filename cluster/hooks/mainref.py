"""The pre-receive rules for refs/heads/main: fast-forward only, no merges but folds, valid
tasks, folds by agents that only archive."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from cluster.errors import GitError
from cluster.hooks.push import Push
from cluster.hooks.recordref import tip_result
from cluster.hooks.rules import (
    ARCHIVE_BY_FOLD,
    classify,
    people_change_problems,
    settings_of,
)
from cluster.state.gitobj import ObjectStore
from cluster.state.ids import MAIN, TASKS_DIR, archive_path, key_for_name, shard
from cluster.state.records import Result, load_result
from cluster.state.settings import SETTINGS_FILE
from cluster.state.treediff import Change, commit_changes, lookup

ARCHIVED_FILE = re.compile(r"(task|result)(\.[0-9a-f]{12})?\.yaml")
MERGE = ("a merge: main takes merges only from folds (parent {parent} is not a claim this push "
         "folds); rebase onto main and push again")
FOLD_ONLY = ("a fold only archives: it adds archive/<xx>/<id>/{task,result}.yaml and removes "
             "the tasks/ files of the tasks it folds, nothing else; commit other changes "
             "separately")


@dataclass
class Fold:
    """What one commit adds under archive/: per key, file name -> blob."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    folded: set[str] = field(default_factory=set)


def check_main(push: Push) -> tuple[list[str], set[str]]:
    """Problems of the main update (if any) and the keys its fold commits archive."""
    update = push.main
    if update is None:
        return [], set()
    if update.new is None:
        return [f"{MAIN}: main cannot be deleted"], set()
    problems: list[str] = []
    if update.old is not None and not push.is_ancestor(update.old, update.new):
        problems.append(
            f"{MAIN}: not a fast-forward ({update.old[:12]} is not an ancestor of "
            f"{update.new[:12]}): fetch, rebase onto main and push again"
        )
    folded: set[str] = set()
    for sha in push.new_commits(update.new):
        lines, keys = check_commit(push, sha)
        problems += [f"{MAIN} {sha[:12]}: {line}" for line in lines]
        folded |= keys
    return problems, folded


def check_commit(push: Push, sha: str) -> tuple[list[str], set[str]]:
    """Problems of one new commit on main and the keys it folds. Only a fold may have more
    than one parent (the tips of the claim refs it archives, which the push deletes); every
    commit is judged by what it changed against its first parent."""
    store = push.store
    commit = store.commit(sha)
    tree = commit.tree
    changes = commit_changes(store, sha)
    deleted = push.deleted_claims()
    tips = set(deleted.values())
    merges = [MERGE.format(parent=p[:12]) for p in commit.parents[1:] if p not in tips]
    if merges:
        return merges, set()  # judged against a side branch's base, the rest would mislead
    pruning = _prune(changes, len(commit.parents))
    if pruning is not None:
        return [problem for key in pruning if (problem := _pruned_whole(store, tree, key))], set()
    settings_entry = lookup(store, tree, SETTINGS_FILE)
    settings_data = store.blob(settings_entry.sha) if settings_entry else None
    known = settings_of(settings_data)[0].known_specialties
    fold = _fold(push, changes)
    problems = list(fold.problems)
    for key in sorted(fold.files):
        if deleted[key] not in commit.parents:
            problems.append(f"{archive_path(key)}/: a fold has the tip of refs/claims/{key} "
                            f"({deleted[key][:12]}) among its parents")
    if len(commit.parents) > 1 or fold.files:
        problems += _fold_only(changes, set(fold.files))
    claimed = push.claimed_before()
    for change in changes:
        kind = classify(change.path)
        if kind == "archive":
            continue  # judged as a whole by _fold
        new = store.blob(change.new) if change.new else None
        problems += people_change_problems(change.path, new, known)
        if kind != "task":
            continue
        key = key_for_name(change.path[len(TASKS_DIR) + 1 :])
        if change.new is None:
            if key in claimed and key not in fold.folded:
                problems.append(f"{change.path}: task {key!r} is in flight "
                                f"(refs/claims/{key} exists): only a fold may remove its file")
            continue
        if key in claimed:
            problems.append(f"{change.path}: task {key!r} is in flight "
                            f"(refs/claims/{key} exists): its file cannot change")
        elif lookup(store, tree, archive_path(key)) is not None:
            problems.append(f"{change.path}: id {key!r} is already used by an archived task")
        elif key in push.folded_before():
            problems.append(f"{change.path}: id {key!r} already finished (archived in main's "
                            "history, since pruned): an id runs once, use a new one")
    for key in fold.folded:
        if lookup(store, tree, f"{TASKS_DIR}/{key}.yaml") is not None:
            problems.append(f"{archive_path(key)}: the fold leaves {TASKS_DIR}/{key}.yaml "
                            "behind")
    return problems, fold.folded


def _prune(changes: list[Change], parents: int) -> list[str] | None:
    """The keys a prune (``invoke maintain``) takes out of archive/, or None when the commit
    is no prune: one parent, and nothing changed but archive/ files deleted. The ids stay
    known through main's history (cluster.state.history), so none can run again."""
    if parents != 1 or not changes:
        return None
    if any(classify(c.path) != "archive" or c.new is not None for c in changes):
        return None
    return sorted({c.path.split("/")[2] for c in changes if c.path.count("/") >= 2})


def _pruned_whole(store: ObjectStore, tree: str, key: str) -> str | None:
    if lookup(store, tree, archive_path(key)) is None:
        return None
    return f"{archive_path(key)}/: a prune removes an archived task's entry whole"


def _fold_only(changes: list[Change], archiving: set[str]) -> list[str]:
    """A fold commit's changes outside archive/: only the removal of the files (or
    directories) under tasks/ of the tasks it archives."""
    problems = []
    for change in changes:
        kind = classify(change.path)
        if kind == "archive":
            continue
        entry = change.path[len(TASKS_DIR) + 1 :].split("/")[0]
        if (change.new is None and kind in ("task", "tasks-subdir")
                and key_for_name(entry) in archiving):
            continue
        problems.append(f"{change.path}: {FOLD_ONLY}")
    return problems


def _fold(push: Push, changes: list[Change]) -> Fold:
    """Check the archive/ part of a commit against the claim refs the push deletes."""
    fold = Fold()
    deleted = push.deleted_claims()
    for change in changes:
        if classify(change.path) != "archive":
            continue
        parts = change.path.split("/")
        if len(parts) != 4 or change.old is not None or change.new is None:
            fold.problems.append(f"{change.path}: archive/ entries are only ever added, "
                                 "as archive/<xx>/<id>/{task,result}.yaml")
            continue
        _, xx, key, name = parts
        if key not in deleted:
            fold.problems.append(f"{change.path}: {ARCHIVE_BY_FOLD}")
        elif xx != shard(key):
            fold.problems.append(f"{change.path}: task {key!r} belongs in archive/{shard(key)}/")
        elif ARCHIVED_FILE.fullmatch(name) is None:
            fold.problems.append(f"{archive_path(key)}/{name!r}: a fold adds only task.yaml "
                                 "and result.yaml")
        else:
            fold.files.setdefault(key, {})[name] = change.new
    removed = {
        key_for_name(c.path[len(TASKS_DIR) + 1 :]): c.old
        for c in changes if classify(c.path) == "task" and c.new is None
    }
    for key, files in fold.files.items():
        lines = _fold_problems(push, key, files, deleted[key], removed.get(key))
        fold.problems += lines
        if not lines:
            fold.folded.add(key)
    return fold


def _fold_problems(push: Push, key: str, files: dict[str, str], tip: str,
                   removed: str | None) -> list[str]:
    base = archive_path(key)
    suffixes = ("", f".{tip[:12]}")
    result_name = next((f"result{s}.yaml" for s in suffixes if f"result{s}.yaml" in files), None)
    if result_name is None:
        return [f"{base}/: a fold adds result.yaml, the result at refs/claims/{key}"]
    problems = []
    if tip_result(push.store, tip) != _parse_result(push, files[result_name]):
        problems.append(f"{base}/{result_name}: does not match the result at "
                        f"refs/claims/{key} ({tip[:12]}) that this push deletes")
    for name, blob in files.items():
        if name.startswith("task") and blob != removed:
            problems.append(f"{base}/{name}: must be the file this commit removes from "
                            f"{TASKS_DIR}/ for task {key!r}")
        elif name.startswith("result") and name != result_name:
            problems.append(f"{base}/{name}: one result per fold")
    return problems


def _parse_result(push: Push, blob: str) -> Result | bool:
    try:
        return load_result(push.store.blob(blob))
    except (GitError, ValueError, TypeError, yaml.YAMLError):
        return False  # never equal to a tip's result, nor to None
