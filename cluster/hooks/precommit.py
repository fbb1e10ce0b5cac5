"""People's pre-commit hook in a clone of the state repo: the server's rules for staged files."""

from __future__ import annotations

from pathlib import Path

from cluster.hooks.rules import people_change_problems, settings_of
from cluster.state.gitcmd import hook_env, run_git
from cluster.state.gitobj import ObjectStore
from cluster.state.settings import SETTINGS_FILE
from cluster.state.treediff import lookup

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
ZERO = "0" * 40


def staged(work: Path) -> list[tuple[str, str | None]]:
    """``(path, staged blob or None for a deletion)`` for every staged change."""
    head = run_git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=work, check=False,
                   env=hook_env())
    base = head.stdout.strip() if head.returncode == 0 else EMPTY_TREE
    raw = run_git(["diff-index", "--cached", "-z", "--no-renames", base], cwd=work,
                  env=hook_env()).stdout
    fields = raw.split("\0")
    out: list[tuple[str, str | None]] = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        _, _, _, new, status = meta[1:].split(" ")
        out.append((path, None if status == "D" or new == ZERO else new))
    return out


def check_staged(work: Path) -> list[str]:
    """Problems of the staged changes in the clone at ``work``, as the server would say them."""
    git_dir = Path(run_git(["rev-parse", "--absolute-git-dir"], cwd=work,
                           env=hook_env()).stdout.strip())
    store = ObjectStore(git_dir, hook_env())
    try:
        index = run_git(["rev-parse", "--verify", "--quiet", f":{SETTINGS_FILE}"], cwd=work,
                        check=False, env=hook_env())
        settings_blob = index.stdout.strip() if index.returncode == 0 else None
        known = settings_of(store.blob(settings_blob) if settings_blob else None)[0]
        merged = _merge_tree(work, store)
        problems: list[str] = []
        for path, blob in staged(work):
            if merged is not None and _blob_at(store, merged, path) == blob:
                continue  # concluding a merge: taken as is from main, judged there already
            data = store.blob(blob) if blob else None
            problems += people_change_problems(path, data, known.known_specialties)
        return problems
    finally:
        store.close()


def _merge_tree(work: Path, store: ObjectStore) -> str | None:
    done = run_git(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"], cwd=work, check=False,
                   env=hook_env())
    return store.commit(done.stdout.strip()).tree if done.returncode == 0 else None


def _blob_at(store: ObjectStore, tree: str, path: str) -> str | None:
    entry = lookup(store, tree, path)
    return entry.sha if entry is not None and not entry.is_tree else None
