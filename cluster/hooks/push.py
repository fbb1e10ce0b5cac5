"""One push as the pre-receive hook sees it: every ref update at once and the refs before."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cluster.errors import ClusterError
from cluster.state.gitcmd import hook_env, run_git
from cluster.state.gitobj import ObjectStore, QuarantineStore
from cluster.state.history import FoldLedger, is_ancestor
from cluster.state.ids import CLAIMS, MAIN
from cluster.state.localrefs import read_refs

ZERO = "0" * 40
# Where git keeps a push's objects until its hooks accept it: a push naming any of these is
# read through them.
QUARANTINE = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")


@dataclass(frozen=True)
class Update:
    """One line of pre-receive's input; ``old``/``new`` None for a creation/deletion."""

    ref: str
    old: str | None
    new: str | None


def parse_updates(lines: Iterable[str]) -> list[Update]:
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            if parts:
                raise ClusterError(f"pre-receive: unexpected input line {line.strip()!r}")
            continue
        old, new, ref = parts
        updates.append(Update(ref, None if old == ZERO else old, None if new == ZERO else new))
    return updates


def quarantine_of(git_dir: Path, env: Mapping[str, str]) -> Path | None:
    """The quarantine of a push into ``git_dir`` whose objects a reader of ``git_dir`` plus
    the quarantine's loose objects see in full: receive-pack's ``GIT_OBJECT_DIRECTORY``,
    borrowing ``git_dir``'s own objects alone (``GIT_ALTERNATE_OBJECT_DIRECTORIES``) and
    holding no pack. None for anything else (then a reader of the push's own reads it)."""
    where, borrowed = env.get("GIT_OBJECT_DIRECTORY"), env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES")
    if not where or not borrowed or not where.startswith("/"):
        return None
    quarantine = Path(where)
    try:
        if Path(borrowed).resolve() != (git_dir / "objects").resolve():
            return None
        if (quarantine / "info" / "alternates").exists():
            return None
        if any((quarantine / "pack").glob("*.pack")):
            return None
    except OSError:
        return None
    return quarantine if quarantine.is_dir() else None


@dataclass
class Push:
    git_dir: Path
    store: ObjectStore
    updates: list[Update]
    refs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the hook's git variables (hook_env)
    _folded: Mapping[str, str] | None = None
    _own_store: bool = True  # closed with the push (a shared one is its owner's)

    @classmethod
    def open(cls, git_dir: Path, updates: list[Update],
             environ: Mapping[str, str] | None = None,
             shared: ObjectStore | None = None) -> Push:
        """The push git is receiving into ``git_dir``; ``environ`` is the hook's environment
        (this process's by default; the judge server's client sends its own). ``shared``, a
        reader of the repository's own objects that outlives the push, serves a push whose
        objects are already there (no quarantine: a judged write, cluster.state.judgedwrite)
        instead of a reader started for it, and with the quarantine's loose objects read in
        process, a push whose quarantine borrows exactly the repository's objects and holds
        no pack (:func:`quarantine_of`)."""
        # Read from the repository's files, as agents on a plain path do: a git process less
        # per push (the quarantine holds only the pushed objects; refs are the repository's).
        refs = read_refs(git_dir, [MAIN, CLAIMS.rstrip("/")])
        env = hook_env(environ)
        if shared is not None and not any(name in env for name in QUARANTINE):
            return cls(git_dir, shared, updates, refs, env, _own_store=False)
        quarantine = quarantine_of(git_dir, env) if shared is not None else None
        if shared is not None and quarantine is not None:
            return cls(git_dir, QuarantineStore(git_dir, quarantine, shared), updates, refs, env)
        return cls(git_dir, ObjectStore(git_dir, env), updates, refs, env)

    @property
    def main(self) -> Update | None:
        return next((u for u in self.updates if u.ref == MAIN), None)

    def main_after(self) -> str | None:
        """Main's commit once this push is applied."""
        update = self.main
        return update.new if update is not None else self.refs.get(MAIN)

    def claimed_before(self) -> set[str]:
        return {ref[len(CLAIMS) :] for ref in self.refs if ref.startswith(CLAIMS)}

    def deleted_claims(self) -> dict[str, str]:
        """Claim keys this push deletes, with the tip each deletion removes."""
        out = {}
        for update in self.updates:
            if update.ref.startswith(CLAIMS) and update.new is None:
                tip = update.old or self.refs.get(update.ref)
                if tip:
                    out[update.ref[len(CLAIMS) :]] = tip
        return out

    def folded_before(self) -> Mapping[str, str]:
        """Ids a fold archived anywhere in main's history before this push (even those a
        later commit took out of archive/): an id runs once (cluster.state.history)."""
        if self._folded is None:
            ledger = FoldLedger(self.git_dir, self.env, self.store)
            self._folded = ledger.update(self.refs.get(MAIN))
        return self._folded

    def new_commits(self, tip: str) -> list[str]:
        """Commits reachable from ``tip`` and from no ref yet, oldest first."""
        done = run_git(["rev-list", "--topo-order", "--reverse", tip, "--not", "--all"],
                       git_dir=self.git_dir, env=self.env)
        return done.stdout.split()

    def is_ancestor(self, old: str, new: str) -> bool:
        return is_ancestor(self.git_dir, old, new, env=self.env, store=self.store)

    def close(self) -> None:
        if self._own_store:
            self.store.close()
