"""One consistent-enough reading of the state repo, and the task states derived from it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cluster.errors import ClusterError, GitError, ValidationError
from cluster.state.gitobj import Entry, ObjectStore, Tree
from cluster.state.history import FoldLedger, added
from cluster.state.ids import ARCHIVE_DIR, MAIN, TASKS_DIR, archive_path, key_for_name
from cluster.state.records import (
    Claim,
    ClaimRecord,
    Heartbeat,
    Release,
    Result,
    load_claim_record,
    load_heartbeat,
    load_result,
)
from cluster.state.schema import TaskSpec, parse_task
from cluster.state.settings import SETTINGS_FILE, RepoSettings, parse_settings

IGNORED_IN_TASKS = ("README.md", ".gitkeep")


def entry_key(name: str) -> str | None:
    """The key of the entry ``tasks/<name>`` (a file or a directory directly under
    ``tasks/``), or None for what the queue ignores. Agents, ``status`` and ``check`` all
    judge ``tasks/`` by this one rule: ``tasks/dir.yaml/x`` is the entry ``dir.yaml``."""
    if name in IGNORED_IN_TASKS or name.startswith("."):
        return None
    return key_for_name(name)


@dataclass(frozen=True)
class TaskView:
    key: str
    path: str
    blob: str
    spec: TaskSpec | None
    error: str | None
    added_at: float
    is_file: bool = True


@dataclass(frozen=True)
class ClaimView:
    key: str
    tip: str
    record: ClaimRecord
    written_at: float  # the tip commit's committer time

    @property
    def finished_at(self) -> float | None:
        """When a terminal result was written: its own ``finished_at``, or for a result
        without one (repos from before every writer stamped it) its commit's time; a fixed
        point either way, so a fold's age never moves with the reader's clock."""
        if not isinstance(self.record, Result):
            return None
        return self.record.finished_at if self.record.finished_at is not None else self.written_at


@dataclass
class Snapshot:
    main: str | None
    settings: RepoSettings
    tasks: dict[str, TaskView]
    archived: dict[str, Tree]
    claims: dict[str, ClaimView]
    agents: dict[str, Heartbeat]
    taken_at: float
    store: ObjectStore
    # Ids a fold archived anywhere in main's history, with that fold commit (history.py).
    folded: Mapping[str, str] = field(default_factory=dict)
    # Those of them that a prune (invoke maintain) took out of archive/ since.
    pruned: frozenset[str] = frozenset()
    _results: dict[str, Result] = field(default_factory=dict)

    def claim_tip(self, key: str) -> str | None:
        view = self.claims.get(key)
        return view.tip if view is not None else None

    def result(self, key: str) -> Result | None:
        """The terminal result of ``key``: from its claim ref or from the archive."""
        view = self.claims.get(key)
        if view is not None and isinstance(view.record, Result):
            return view.record
        entry = self.archived.get(key, {}).get("result.yaml")
        if entry is None and key in self.folded:
            entry = self._folded_result(key)
        if entry is None:
            return None
        cached = self._results.get(entry.sha)
        if cached is None:
            cached = load_result(self.store.blob(entry.sha))
            self._results[entry.sha] = cached
        return cached

    def _folded_result(self, key: str) -> Entry | None:
        """The result a fold archived for ``key``, read from that fold's own tree (for an id
        whose archive/ entry a later commit removed)."""
        try:
            tree = self.store.tree(self.store.commit(self.folded[key]).tree)
            for part in archive_path(key).split("/"):
                tree = self.store.tree(tree[part].sha)
        except (GitError, KeyError, ValueError):
            return None
        return next((e for n, e in sorted(tree.items()) if n.startswith("result")), None)

    def archived_spec(self, key: str) -> TaskSpec | None:
        """The task file archived with ``key``'s result, parsed (None if absent or bad)."""
        entry = self.archived.get(key, {}).get("task.yaml")
        if entry is None:
            return None
        try:
            return parse_task(f"tasks/{key}.yaml", self.store.blob(entry.sha),
                              self.settings.known_specialties)
        except (ValidationError, GitError):
            return None

    def known(self, key: str) -> bool:
        """Is ``key`` used: queued, in flight, archived, or folded anywhere in main's history?"""
        return (key in self.tasks or key in self.archived or key in self.claims
                or key in self.folded)

    def state(self, key: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if key in self.folded and key in self.tasks and key not in self.claims:
            return "replayed"
        if key in self.archived:
            result = self.result(key)
            return result.status if result else "archived"
        view = self.claims.get(key)
        if view is None:
            return "pending" if key in self.tasks else "unknown"
        record = view.record
        if isinstance(record, Result):
            return record.status
        if isinstance(record, Release):
            return "released"
        if now > record.expires_at + self.settings.skew_seconds:
            return "stale"
        return "claimed"

    def online_agents(self, now: float | None = None) -> list[Heartbeat]:
        now = time.time() if now is None else now
        return [hb for hb in self.agents.values() if hb.online(now)]

    def terminal_keys(self) -> list[str]:
        return [k for k, v in self.claims.items() if isinstance(v.record, Result)]

    def replayed(self) -> dict[str, str]:
        """Task files on main whose id a fold already archived in main's history (the file
        brought back, the archive rewritten, where no hook runs): never run, nor judged,
        again. Each with the reason every reader gives."""
        return {key: self.replay_reason(key) for key in self.tasks
                if key in self.folded and key not in self.claims}

    def replay_reason(self, key: str) -> str:
        return (f"{self.tasks[key].path}: id {key!r} already finished (archived by fold "
                f"{self.folded[key][:12]} in main's history); an id runs once: remove the "
                "file, or submit the work under a new id")

    def unarchived(self) -> list[str]:
        """Ids a fold archived in main's history that ``archive/`` no longer holds and no
        prune took out: the archive was rewritten (their records stay in history)."""
        return sorted(key for key in self.folded
                      if key not in self.archived and key not in self.pruned)


class Reader:
    """Builds snapshots, re-reading only what changed since the last one (by object id)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._tasks: dict[str, TaskView] = {}
        self._tasks_tree: str | None = None
        self._archive: dict[str, dict[str, Tree]] = {}
        self._claims: dict[str, ClaimView] = {}
        self._agents: dict[str, tuple[str, Heartbeat]] = {}
        self._settings: tuple[str | None, RepoSettings] = (None, RepoSettings())
        self._added: dict[str, float] = {}
        self._main_seen: str | None = None
        self._tip_time = time.time()
        self._ledger = FoldLedger(store.git_dir, store=store)

    def read(self, refs: dict[str, str]) -> Snapshot:
        main = refs.get(MAIN)
        commit = self.store.commit(main) if main else None
        self._tip_time = float(commit.committer_time) if commit else time.time()
        root: Tree = self.store.tree(commit.tree) if commit else {}
        settings = self._read_settings(root.get(SETTINGS_FILE))
        if main and self._main_seen is None:
            self._note_added(main)  # once: later additions take the time of the tip seen
        tasks = self._read_tasks(root.get(TASKS_DIR), settings)
        archived = self._read_archive(root.get(ARCHIVE_DIR))
        claims = self._read_claims(refs)
        agents = self.read_agents(refs)
        folded = self._ledger.update(main)
        self._main_seen = main
        return Snapshot(main, settings, tasks, archived, claims, agents, time.time(), self.store,
                        folded, self._ledger.pruned)

    def _read_settings(self, entry: Entry | None) -> RepoSettings:
        sha = entry.sha if entry else None
        if sha != self._settings[0]:
            try:
                parsed = parse_settings(self.store.blob(sha) if sha else None)
            except ValidationError:
                parsed = RepoSettings()  # a broken settings file must not stop the fleet
            self._settings = (sha, parsed)
        return self._settings[1]

    def _note_added(self, main: str) -> None:
        """When each task file first landed on main: the age half of the claim order."""
        try:
            for item in added(self.store.git_dir, main, TASKS_DIR):
                key = entry_key(item.path[len(TASKS_DIR) + 1 :].split("/", 1)[0])
                if key is not None:
                    self._added[key] = item.time  # log runs newest first: the oldest add wins
        except ClusterError:
            return

    def _read_tasks(self, entry: Entry | None, settings: RepoSettings) -> dict[str, TaskView]:
        if entry is None:
            self._tasks, self._tasks_tree = {}, None
            return {}
        if entry.sha == self._tasks_tree:
            return self._tasks
        fresh: dict[str, TaskView] = {}
        known = settings.known_specialties
        for name, item in self.store.tree(entry.sha).items():
            key = entry_key(name)
            if key is None:
                continue
            old = self._tasks.get(key)
            if old is not None and old.blob == item.sha:
                fresh[key] = old
                continue
            fresh[key] = self._parse_task(key, f"{TASKS_DIR}/{name}", item, known)
        self._tasks, self._tasks_tree = fresh, entry.sha
        return fresh

    def _parse_task(self, key: str, path: str, item: Entry, known: frozenset[str]) -> TaskView:
        added = self._added.setdefault(key, self._tip_time)
        if item.is_tree:
            error = f"{path}: a directory, not a task file"
            return TaskView(key, path, item.sha, None, error, added, is_file=False)
        try:
            spec = parse_task(path, self.store.blob(item.sha), known)
        except ValidationError as exc:
            return TaskView(key, path, item.sha, None, str(exc), added)
        return TaskView(key, path, item.sha, spec, None, added)

    def _read_archive(self, entry: Entry | None) -> dict[str, Tree]:
        if entry is None:
            self._archive = {}
            return {}
        shards = self.store.tree(entry.sha)
        fresh: dict[str, dict[str, Tree]] = {}
        out: dict[str, Tree] = {}
        for name, shard in shards.items():
            keys = self._archive.get(shard.sha)
            if keys is None:
                keys = {k: self.store.tree(e.sha) for k, e in self.store.tree(shard.sha).items()}
            fresh[shard.sha] = keys
            out.update(keys)
            del name
        self._archive = fresh
        return out

    def _read_claims(self, refs: dict[str, str]) -> dict[str, ClaimView]:
        fresh: dict[str, ClaimView] = {}
        for ref, sha in refs.items():
            if not ref.startswith("refs/claims/"):
                continue
            key = ref[len("refs/claims/") :]
            old = self._claims.get(key)
            if old is not None and old.tip == sha:
                fresh[key] = old
                continue
            view = self._read_view(key, sha)
            if view is not None:
                fresh[key] = view
        self._claims = fresh
        return fresh

    def _read_view(self, key: str, sha: str) -> ClaimView | None:
        try:
            commit = self.store.commit(sha)
            (name, entry), = self.store.tree(commit.tree).items()
            record = load_claim_record(name, self.store.blob(entry.sha))
        except (GitError, ValueError, TypeError):
            return None  # not ours to interpret; the hooks keep such refs out
        return ClaimView(key, sha, record, float(commit.committer_time))

    def read_agents(self, refs: dict[str, str]) -> dict[str, Heartbeat]:
        """The heartbeats of the ``refs/agents/*`` among ``refs``: alone, for a reader that
        polls only them (deploy verification), or as part of :meth:`read`."""
        fresh: dict[str, tuple[str, Heartbeat]] = {}
        for ref, sha in refs.items():
            if not ref.startswith("refs/agents/"):
                continue
            agent = ref[len("refs/agents/") :]
            old = self._agents.get(agent)
            if old is not None and old[0] == sha:
                fresh[agent] = old
                continue
            try:
                tree = self.store.tree(self.store.commit(sha).tree)
                fresh[agent] = (sha, load_heartbeat(self.store.blob(tree["agent.yaml"].sha)))
            except (GitError, KeyError, ValueError, TypeError):
                continue
        self._agents = fresh
        return {agent: hb for agent, (_, hb) in fresh.items()}


__all__ = ["Claim", "ClaimView", "Reader", "Snapshot", "TaskView", "entry_key"]
