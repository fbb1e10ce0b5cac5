"""Direct access to a state repo on a local path: refs read in Python, CAS by ref transaction.

``git update-ref --stdin`` takes the same ref locks and checks the same old values as the
``receive-pack`` behind a push, so it is the same compare-and-swap, minus four processes.
Server hooks do not run for these writes; a ``file://`` URL takes the push path instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cluster.errors import RemoteUnavailable
from cluster.state.gitcmd import Completed, PushReport, RefUpdate, raise_for, run_git
from cluster.state.reflocks import locks_named

ZERO = "0" * 40
# What git says when an expected old value does not hold, or another writer holds the ref's
# lock: nothing changed. (A writer that must know which, like a result, re-reads the ref.)
_LOST = ("reference already exists", "but expected", "unable to resolve reference",
         ".lock': File exists")


def read_refs(git_dir: Path, names: Sequence[str]) -> dict[str, str]:
    """Refs at or under ``names`` (e.g. ``refs/heads/main``, ``refs/claims``).

    Loose refs are read before ``packed-refs``: git writes the packed entry before removing a
    loose one, so a ref being packed is never missed. A ref being deleted may still show; the
    CAS that follows any decision catches that.
    """
    if not (git_dir / "HEAD").exists():
        raise RemoteUnavailable(f"state remote {git_dir} is not there")
    loose: dict[str, str] = {}
    for name in names:
        base = git_dir / name
        if base.is_file():
            _read_loose(base, name, loose)
        elif base.is_dir():
            for root, _dirs, files in os.walk(base):
                for file in files:
                    if not file.endswith(".lock"):
                        path = Path(root) / file
                        _read_loose(path, path.relative_to(git_dir).as_posix(), loose)
    packed: dict[str, str] = {}
    try:
        text = (git_dir / "packed-refs").read_text()
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        if not line or line[0] in "#^":
            continue
        sha, _, ref = line.partition(" ")
        if any(ref == n or ref.startswith(n + "/") for n in names):
            packed[ref] = sha
    packed.update(loose)
    return packed


def _read_loose(path: Path, ref: str, out: dict[str, str]) -> None:
    try:
        value = path.read_text().strip()
    except (FileNotFoundError, IsADirectoryError):
        return  # deleted or being rewritten right now
    if len(value) == 40:
        out[ref] = value


def update_refs(git_dir: Path, updates: Sequence[RefUpdate], *, atomic: bool) -> PushReport:
    """Apply ``updates`` as CAS ref transactions: all in one (atomic) or one per ref."""
    groups = [list(updates)] if atomic else [[u] for u in updates]
    accepted: set[str] = set()
    rejected: set[str] = set()
    locks: list[Path] = []
    for group in groups:
        lines = []
        for u in group:
            old = u.old or ZERO
            verb = f"delete {u.ref}" if u.new is None else f"update {u.ref} {u.new}"
            lines.append(f"{verb} {old}")
        done = _update_ref(git_dir, "\n".join(lines) + "\n")
        refs = {u.ref for u in group}
        if done.returncode == 0:
            accepted |= refs
        elif any(marker in done.stderr for marker in _LOST):
            rejected |= refs
            locks += locks_named(done.stderr)
        else:
            raise_for(["git", "update-ref", "--stdin"], done)
    return PushReport(frozenset(accepted), frozenset(rejected), tuple(dict.fromkeys(locks)))


def _update_ref(git_dir: Path, stdin: str) -> Completed:
    """One ``git update-ref --stdin`` run *inside* ``git_dir`` (``--git-dir .``).

    git creates a ref's missing leading directories before it locks the ref, so a git given
    the repository's path, whose repository is moved away while it runs, re-creates an empty
    ``refs/...`` skeleton at the old path: the repository moved back then lands inside it and
    the remote is gone for good. Run from within, every path git touches follows the
    directory wherever it is moved, and a repository already gone is one that is not there.
    """
    try:
        return run_git(["update-ref", "--stdin"], git_dir=Path(), cwd=git_dir,
                       input_text=stdin, check=False)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if git_dir.is_dir():
            raise  # not the repository: git itself is missing
        raise RemoteUnavailable(f"state remote {git_dir} is not there") from exc
