"""The state remote as agent, health and deploy see it: a mirror, refs read cheaply, CAS pushes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from cluster.errors import ConfigError, RemoteUnavailable
from cluster.state.gitcmd import PushReport, RefUpdate, push, raise_for, run_git
from cluster.state.gitobj import ObjectStore
from cluster.state.ids import MAIN
from cluster.state.judgedwrite import judge
from cluster.state.localrefs import read_refs, update_refs
from cluster.state.reflocks import clear_stale, locks_named

if TYPE_CHECKING:
    from cluster.state.session import StateSession

REF_PATTERNS = (MAIN, "refs/claims", "refs/agents")
AGENT_REFS = ("refs/agents",)  # heartbeats alone: what deploy verification polls
# A wake-up's fetch does nothing but bring objects and move mirror refs: no `git maintenance`
# child (a process per fetch; the mirror is never collected: gc.auto 0), no FETCH_HEAD, and no
# walk asking whether each update was forced (every lease renewal is).
FETCH_FLAGS = ("--quiet", "--prune", "--no-tags", "--no-auto-maintenance",
               "--no-write-fetch-head", "--no-show-forced-updates")


def ref_patterns(prefixes: Sequence[str]) -> list[str]:
    """Git's ref patterns for the refs at or under ``prefixes`` (see REF_PATTERNS)."""
    return [p if p.startswith("refs/heads/") else f"{p}/*" for p in prefixes]


MIRROR = "refs/mirror/"


def fetch_specs(prefixes: Sequence[str]) -> list[str]:
    """Refspecs bringing the refs at or under ``prefixes`` into the mirror's ``refs/mirror/``."""
    return [f"+{pattern}:{mirror_name(pattern)}" for pattern in ref_patterns(prefixes)]


def mirror_name(ref: str) -> str:
    """Where the mirror keeps the remote's ``ref`` (or pattern): under ``refs/mirror/``."""
    return f"{MIRROR}{ref.removeprefix('refs/')}"


def mirror_dir(url: str, workdir: Path) -> Path:
    """The bare mirror of the state remote ``url`` under ``workdir``: one per URL and owner."""
    key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:12]
    return workdir / f"mirror-{key}.git"


def local_path(url: str) -> Path | None:
    """The filesystem path of a state remote given as a plain path, else None.

    A ``file://`` URL is deliberately not a path here: its writes go under the repository's
    rules (its judge server's or its hook's), as ssh:// and https:// pushes do.
    """
    if "://" in url or (":" in url.split("/", 1)[0] and not url.startswith("/")):
        return None  # ssh://, https://, or scp-like user@host:path
    return Path(url).expanduser().resolve()


def local_files(url: str) -> Path | None:
    """Where the repository's files are on this machine: a plain path or a ``file://`` URL."""
    if url.startswith("file://"):
        path = unquote(urlsplit(url).path)
        return Path(path) if path else None  # "file://" alone names no repository
    return local_path(url)


class StateRemote:
    """Reads and writes the state repo at ``url``; the one reader of it (agent, health, deploy).

    A repository on this machine is used in place: refs are read from its files and objects
    are written into it. A plain path's refs are moved by CAS ref transactions (see
    ``localrefs``), which no hook sees; a ``file://`` URL's writes are judged by the
    repository's rules before the same transaction, by its judge server when one answers
    (``judgedwrite``), else by its hook, pushed to. Any other URL goes through a bare mirror
    under ``workdir`` (:func:`mirror_dir`): each read is one fetch of the protocol's refs into
    it (the objects the mirror lacks come with it), and writes are CAS pushes. ``env`` (say a
    ``GIT_SSH_COMMAND``) goes to every git that talks to the remote, reads and writes alike
    (and to the watch command that runs over the same ssh).
    """

    def __init__(self, url: str, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.path = local_path(url)
        self.env = dict(env) if env else None
        self.files = local_files(url)
        # The repository's own directory when it is on this machine, else our mirror of it.
        self.mirror = self.files if self.files is not None else mirror_dir(url, workdir)
        if self.files is None:
            self._ensure_mirror()
        self.store = ObjectStore(self.mirror)
        self.on_stale_lock: Callable[[Path], None] = lambda lock: None
        # Each read of the remote's refs: "fetch" (listing and fetching at once) through the
        # mirror, "files" of a repository read in place.
        self.on_read: Callable[[str], None] = lambda kind: None
        # An ssh:// remote's session with its host (cluster.state.session.attach): reads and
        # judged writes over one channel, git's transport when it says None.
        self.session: StateSession | None = None

    def _ensure_mirror(self) -> None:
        if not (self.mirror / "HEAD").exists():
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            run_git(["init", "--quiet", "--bare", str(self.mirror)])
            run_git(["config", "gc.auto", "0"], git_dir=self.mirror)

    def check(self) -> None:
        """Raise RemoteUnavailable (or ConfigError for a path that is no repo) right away."""
        if self.files is not None and not (self.files / "HEAD").exists():
            if self.files.exists():
                raise ConfigError(f"{self.url} is not a git repository")
            raise RemoteUnavailable(f"state remote {self.url} does not exist (yet?)")
        self.refs()

    def refs(self, prefixes: Sequence[str] = REF_PATTERNS) -> dict[str, str]:
        """The refs at or under ``prefixes`` (all the protocol's by default, or say only
        :data:`AGENT_REFS`), each pointing at an object the mirror holds.

        A repository on this machine: its ref files, read in place. Elsewhere: one fetch of
        ``prefixes`` (protocol v2: the server lists only those, and sends only
        the objects the mirror lacks), then the mirror's copy read: a single round trip that
        brings main and the claims from one listing of the remote (a fold moves main and
        deletes the claims it archives in one atomic push: a reader sees both or neither).
        A listing first (``ls-remote``) and a fetch when it showed something new cost a read
        that found news two connections and nine processes where this takes one and six,
        and one process less when nothing moved.
        """
        if self.files is not None:
            self.on_read("files")
            return read_refs(self.files, prefixes)
        if self.session is not None:
            told = self.session.refs(prefixes)
            if told is not None:
                self.on_read("session")
                return told
        self.fetch(prefixes)
        fetched = self.mirrored(prefixes)
        if self.session is not None:
            self.session.fetched(fetched)
        return fetched

    def mirrored(self, prefixes: Sequence[str]) -> dict[str, str]:
        """The mirror's copy of the refs at or under ``prefixes``, by their remote names."""
        local = read_refs(self.mirror, [mirror_name(p) for p in prefixes])
        return {f"refs/{ref.removeprefix(MIRROR)}": sha for ref, sha in local.items()}

    def clear_mirror_locks(self) -> list[Path]:
        """Remove every ref lock in the mirror. Only for a process that holds the mirror alone
        (an agent: cluster.agent.instance), for which any lock there is a dead process's."""
        if self.files is not None:  # the repository itself: never ours alone
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
        if done.returncode != 0 and "couldn't find remote ref" in done.stderr:
            raise RemoteUnavailable(f"state remote {self.url} has no {MAIN}: not a state repo "
                                    "(yet? claude-cluster state init makes one)")
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
        if self.files is not None:
            verdict = judge(self.files, updates)
            if verdict is not None and verdict[0] == 0:
                return update_refs(self.files, updates, atomic=atomic)
            if verdict is not None:  # refused by the rules: nothing changed, as a refused push
                return PushReport(frozenset(), frozenset(u.ref for u in updates))
        if self.session is not None:
            report = self.session.write(updates, atomic)
            if report is not None:
                return report
        # No judge answered (or a remote elsewhere): a push, judged by the installed hook.
        # A file:// repository pushes to itself: its objects are there already.
        return push(self.mirror, self.url, updates, atomic=atomic, env=self.env)

    def reopen(self) -> None:
        """Start over after the remote came back: a fresh cat-file sees its objects again."""
        self.store.close()
        if self.files is None:
            self._ensure_mirror()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.store.close()
