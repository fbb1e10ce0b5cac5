"""One task's attempt history: the commits of its claim chain, oldest first.

A claim ref's commits form one chain (claim, renewals in place, release, claim, ..., result);
after a fold the ref is gone and the chain hangs off the fold commit, one of its parents.
Each commit is read as the history checker reads it (cluster.state.checker).
"""

from __future__ import annotations

from typing import Any

from cluster.errors import GitError
from cluster.state.checker import record_at as read_record
from cluster.state.gitobj import ObjectStore
from cluster.state.records import Claim, ClaimRecord, Release, Result, stamp
from cluster.state.snapshot import Snapshot

MAX_CHAIN = 1000  # commits: a chain longer than any max_attempts allows is cut, not walked on


class Tips:
    """The newest commit of a task's claim chain: its claim ref, else the parent of the fold
    that archived it whose record is the task's (each fold's parents read once, kept)."""

    def __init__(self) -> None:
        self._folds: dict[str, dict[str, str]] = {}

    def of(self, snap: Snapshot, key: str) -> str | None:
        tip = snap.claim_tip(key)
        if tip is not None:
            return tip
        fold = snap.folded.get(key)
        if fold is None:
            return None
        if fold not in self._folds:
            self._folds[fold] = self._read_fold(snap.store, fold)
        return self._folds[fold].get(key)

    @staticmethod
    def _read_fold(store: ObjectStore, fold: str) -> dict[str, str]:
        try:
            parents = store.commit(fold).parents[1:]
        except GitError:
            return {}
        tips: dict[str, str] = {}
        for parent in parents:
            record = read_record(store, parent)
            if record is not None:
                tips.setdefault(record.task, parent)
        return tips


def chain(store: ObjectStore, tip: str | None, key: str) -> list[tuple[str, ClaimRecord, int]]:
    """``(commit, record, committer time)`` of each record of the chain, oldest first."""
    out: list[tuple[str, ClaimRecord, int]] = []
    sha = tip
    while sha is not None and len(out) < MAX_CHAIN:
        try:
            commit = store.commit(sha)
        except GitError:
            break
        record = read_record(store, sha)
        if record is None or record.task != key:
            break
        out.append((sha, record, commit.committer_time))
        sha = commit.parents[0] if commit.parents else None
    out.reverse()
    return out


def history_entry(sha: str, record: ClaimRecord, when: int) -> dict[str, Any]:
    """One step of the history, as /api/tasks/<id> gives it."""
    entry: dict[str, Any] = {"kind": record.KIND, "commit": sha, "agent": record.agent,
                             "attempt": record.attempt}
    if isinstance(record, Claim):
        entry.update(at=stamp(record.claimed_at), host=record.host,
                     renewed_at=stamp(record.renewed_at), expires_at=stamp(record.expires_at),
                     takeover_of=record.takeover_of)
        return entry
    entry.update(at=stamp(record.finished_at if record.finished_at is not None else when),
                 status=record.status, reason=record.reason, duration_s=record.duration_s,
                 cost_usd=record.cost_usd, input_tokens=record.input_tokens,
                 output_tokens=record.output_tokens, pull_request=record.pull_request,
                 branch=record.branch)
    if isinstance(record, Release):
        entry.update(counted=record.counted, retry_at=stamp(record.not_before))
    return entry


def result_fields(record: Result) -> dict[str, Any]:
    """The result record's own fields, times as RFC 3339 (the YAML's form)."""
    from cluster.state import yamlio

    body = yamlio.load(record.to_yaml())
    return dict(body) if isinstance(body, dict) else {}


class ChainTotals:
    """Cost and tokens of every attempt of a chain (each release and result carries its own
    attempt's), memoized per commit: a chain only grows, so a new tip costs one read."""

    LIMIT = 200_000  # commits remembered; past it the memo starts over

    def __init__(self) -> None:
        self._memo: dict[str, tuple[float, int, int]] = {}

    def of(self, store: ObjectStore, tip: str | None, key: str) -> tuple[float, int, int]:
        if len(self._memo) > self.LIMIT:
            self._memo.clear()
        pending: list[tuple[str, ClaimRecord]] = []
        base = (0.0, 0, 0)
        sha = tip
        while sha is not None and len(pending) < MAX_CHAIN:
            if sha in self._memo:
                base = self._memo[sha]
                break
            record = read_record(store, sha)
            if record is None or record.task != key:
                break
            pending.append((sha, record))
            try:
                parents = store.commit(sha).parents
            except GitError:
                break
            sha = parents[0] if parents else None
        for sha, record in reversed(pending):
            if not isinstance(record, Claim):
                base = (base[0] + record.cost_usd, base[1] + record.input_tokens,
                        base[2] + record.output_tokens)
            self._memo[sha] = base
        return base
