"""The state remote as agent, health and deploy see it: a mirror, refs read cheaply, CAS pushes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cluster.errors import ConfigError, RemoteUnavailable
from cluster.state.gitcmd import PushReport, RefUpdate, list_refs, push, raise_for, run_git
from cluster.state.gitobj import ObjectStore
from cluster.state.localrefs import read_refs, update_refs
from cluster.state.reflocks import clear_stale, locks_named

MAIN = "refs/heads/main"
REF_PATTERNS = (MAIN, "refs/claims", "refs/agents")
AGENT_REFS = ("refs/agents",)  # heartbeats alone: what deploy verification polls
# Read in one fetch whenever either moved: a fold moves main and deletes the claim refs it
# archives in one atomic push, and a reader must not see one side of it without the other.
READ_TOGETHER = (MAIN, "refs/claims")
# A wake-up's fetch does nothing but bring objects and move mirror refs: no `git maintenance`
# child (a process per fetch; the mirror is never collected: gc.auto 0), no FETCH_HEAD, and no
# walk asking whether each update was forced (every lease renewal is).
FETCH_FLAGS = ("--quiet", "--prune", "--no-tags", "--no-auto-maintenance",
               "--no-write-fetch-head", "--no-show-forced-updates")


def ls_remote_patterns(prefixes: Sequence[str]) -> list[str]:
    """``git ls-remote`` patterns for the refs at or under ``prefixes`` (see REF_PATTERNS)."""
    return [p if p.startswith("refs/heads/") else f"{p}/*" for p in prefixes]


MIRROR = "refs/mirror/"


def fetch_specs(prefixes: Sequence[str]) -> list[str]:
    """Refspecs bringing the refs at or under ``prefixes`` into the mirror's ``refs/mirror/``."""
    return [f"+{pattern}:{mirror_name(pattern)}" for pattern in ls_remote_patterns(prefixes)]


def mirror_name(ref: str) -> str:
    """Where the mirror keeps the remote's ``ref`` (or pattern): under ``refs/mirror/``."""
    return f"{MIRROR}{ref.removeprefix('refs/')}"


def under(ref: str, prefix: str) -> bool:
    """Is ``ref`` at or under ``prefix`` (one of :data:`REF_PATTERNS`)?"""
    return ref == prefix or ref.startswith(f"{prefix}/")


def mirror_dir(url: str, workdir: Path) -> Path:
    """The bare mirror of the state remote ``url`` under ``workdir``: one per URL and owner."""
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:12]
    return workdir / f"mirror-{key}.git"


def local_path(url: str) -> Path | None:
    """The filesystem path of a state remote given as a plain path, else None.

    A ``file://`` URL is deliberately not a path here: it takes the push and fetch path, as
    ssh:// and https:// do, with the server's hooks.
    """
    if "://" in url or (":" in url.split("/", 1)[0] and not url.startswith("/")):
        return None  # ssh://, https://, or scp-like user@host:path
    return Path(url).expanduser().resolve()


def local_files(url: str) -> Path | None:
    """Where the repository's files are on this machine: a plain path or a ``file://`` URL."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    return local_path(url)


class StateRemote:
    """Reads and writes the state repo at ``url``; the one reader of it (agent, health, deploy).

    A plain local path is used in place: refs are read from its files, objects are written
    into it and refs are moved by CAS ref transactions (see ``localrefs``). Any URL goes
    through a bare mirror under ``workdir`` (:func:`mirror_dir`): ``git ls-remote`` tells what
    changed, objects are fetched only when a ref points at one the mirror lacks, and writes
    are CAS pushes. ``env`` (say a ``GIT_SSH_COMMAND``) goes to every git that talks to the
    remote, reads and writes alike (and to the watch command that runs over the same ssh).
    """

    def __init__(self, url: str, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.path = local_path(url)
        self.env = dict(env) if env else None
        self.mirror = self.path if self.path is not None else mirror_dir(url, workdir)
        if self.path is None:
            self._ensure_mirror()
        self.store = ObjectStore(self.mirror)
        self._have: set[str] = set()
        self.files = local_files(url)
        self.on_stale_lock: Callable[[Path], None] = lambda lock: None
        # Each read that reaches the remote's host: "list" (ls-remote) or "fetch".
        self.on_read: Callable[[str], None] = lambda kind: None

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def _ensure_mirror(self) -> None:
        if not (self.mirror / "HEAD").exists():
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            run_git(["init", "--quiet", "--bare", str(self.mirror)])
            run_git(["config", "gc.auto", "0"], git_dir=self.mirror)

    def check(self) -> None:
        """Raise RemoteUnavailable (or ConfigError for a path that is no repo) right away."""
        if self.path is not None and not (self.path / "HEAD").exists():
            if self.path.exists():
                raise ConfigError(f"{self.url} is not a git repository")
            raise RemoteUnavailable(f"state remote {self.url} does not exist (yet?)")
        self.refs()

    def refs(self, prefixes: Sequence[str] = REF_PATTERNS) -> dict[str, str]:
        """The refs at or under ``prefixes`` (all the protocol's by default, or say only
        :data:`AGENT_REFS`), each pointing at an object the mirror holds.

        One ``ls-remote`` (protocol v2: the server lists only ``prefixes``); when a ref points
        at an object the mirror lacks, one fetch of just the prefixes that moved (main and the
        claims always together: :data:`READ_TOGETHER`), and those prefixes are then read from
        the mirror as the fetch left them: a ref that moved again between the two (a renewal)
        is seen at what the fetch brought, never at a commit the mirror does not hold.
        """
        if self.path is not None:
            return read_refs(self.path, prefixes)
        self.on_read("list")
        refs = list_refs(ls_remote_patterns(prefixes), git_dir=self.mirror, remote=self.url,
                         env=self.env)  # fmt: skip
        missing = {sha for sha in refs.values() if sha not in self._have}
        if missing and not self._have:
            missing -= self._present(missing)  # a mirror an earlier process left up to date
        moved = [p for p in prefixes
                 if any(sha in missing for ref, sha in refs.items() if under(ref, p))]
        if any(p in READ_TOGETHER for p in moved):
            moved = [p for p in prefixes if p in moved or p in READ_TOGETHER]
        if moved:
            self.fetch(moved)
            refs = {ref: sha for ref, sha in refs.items()
                    if not any(under(ref, p) for p in moved)}
            refs.update(self.mirrored(moved))
        seen = set(refs.values())
        # A narrower read (heartbeats alone) adds to what is known present; a full one resets
        # it, so that the set stays the size of the remote's refs.
        self._have = seen if tuple(prefixes) == REF_PATTERNS else self._have | seen
        return refs

    def mirrored(self, prefixes: Sequence[str]) -> dict[str, str]:
        """The mirror's copy of the refs at or under ``prefixes``, by their remote names."""
        local = read_refs(self.mirror, [mirror_name(p) for p in prefixes])
        return {f"refs/{ref.removeprefix(MIRROR)}": sha for ref, sha in local.items()}

    def _present(self, shas: set[str]) -> set[str]:
        listing = "".join(f"{sha}\n" for sha in sorted(shas))
        done = run_git(["cat-file", "--batch-check"], git_dir=self.mirror, input_text=listing,
                       check=False)  # fmt: skip
        found = (line.split() for line in done.stdout.splitlines())
        return shas & {parts[0] for parts in found if len(parts) == 3}  # "<sha> missing": 2

    def clear_mirror_locks(self) -> list[Path]:
        """Remove every ref lock in the mirror. Only for a process that holds the mirror alone
        (an agent: cluster.agent.instance), for which any lock there is a dead process's."""
        if self.path is not None:
            return []
        found = [*self.mirror.glob("*.lock"), *(self.mirror / "refs").rglob("*.lock")]
        for lock in found:
            lock.unlink(missing_ok=True)
            self.on_stale_lock(lock)
        return found

    def fetch(self, prefixes: Sequence[str] = REF_PATTERNS) -> None:
        """Bring the mirror's copy of ``prefixes`` up to date; a lock a killed fetch left in it
        is cleared once stale."""
        argv = ["fetch", *FETCH_FLAGS, self.url, *fetch_specs(prefixes)]
        self.on_read("fetch")
        done = run_git(argv, git_dir=self.mirror, timeout=120, check=False, env=self.env)
        if done.returncode != 0 and self._cleared(locks_named(done.stderr), self.mirror):
            done = run_git(argv, git_dir=self.mirror, timeout=120, check=False, env=self.env)
        if done.returncode != 0:
            raise_for(["git", *argv], done)

    def push(self, updates: Sequence[RefUpdate], *, atomic: bool = False) -> PushReport:
        """CAS ``updates``. Locks a dead writer left on refs we can reach are cleared (see
        ``reflocks``) and what they blocked is written once more."""
        report = self._push(updates, atomic)
        if self.files is None or not self._cleared(report.locks, self.files):
            return report
        again = self._push([u for u in updates if u.ref in report.rejected], atomic)
        return PushReport(report.accepted | again.accepted, again.rejected, again.locks)

    def _cleared(self, locks: Sequence[Path], git_dir: Path) -> bool:
        """Clear the stale ones among ``locks``, say so, and tell whether any was."""
        cleared = clear_stale(locks, git_dir)
        for lock in cleared:
            self.on_stale_lock(lock)
        return bool(cleared)

    def _push(self, updates: Sequence[RefUpdate], atomic: bool) -> PushReport:
        if self.path is not None:
            return update_refs(self.path, updates, atomic=atomic)
        report = push(self.mirror, self.url, updates, atomic=atomic, env=self.env)
        for update in updates:
            if update.new and update.ref in report.accepted:
                self._have.add(update.new)
        return report

    def reopen(self) -> None:
        """Start over after the remote came back: a fresh cat-file sees its objects again."""
        self.store.close()
        if self.path is None:
            self._ensure_mirror()
        self._have.clear()

    def close(self) -> None:
        self.store.close()
