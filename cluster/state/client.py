"""Writes to the state repo: claim, renew, release, take over, fold. Every write is a CAS."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import RemoteUnavailable
from cluster.state.gitcmd import RefUpdate
from cluster.state.gitobj import TreeEditor
from cluster.state.ids import MAIN, agent_ref, archive_path, claim_ref
from cluster.state.records import Claim, Heartbeat, Record, Release, Result
from cluster.state.remote import StateRemote
from cluster.state.snapshot import Reader, Snapshot, TaskView
from cluster.state.statuses import EXPIRED, Retry, next_attempt, settle


@dataclass(frozen=True)
class Identity:
    """Who writes: an agent id (or the operator's name) and the host and pid it runs as."""

    name: str
    host: str = dataclasses.field(default_factory=socket.gethostname)
    pid: int = dataclasses.field(default_factory=os.getpid)

    @property
    def ident(self) -> str:
        return f"{self.name} <{self.name}@{self.host}>"


@dataclass(frozen=True)
class Held:
    """A claim this process holds; ``tip`` is its fencing token (the claim commit)."""

    key: str
    tip: str
    claim: Claim
    task: TaskView


def stamped(result: Result) -> Result:
    """``result`` with the time it is written as its ``finished_at`` when it has none: every
    terminal result says when it was written, whoever writes it, so the fold can age it."""
    if result.finished_at is not None:
        return result
    return dataclasses.replace(result, finished_at=time.time())


class StateClient:
    """One agent's (or tool's) protocol on the state repo at ``url``; ``env`` goes to every
    git that talks to it (cluster.state.remote.StateRemote)."""

    def __init__(self, url: str, workdir: Path, identity: Identity,
                 env: Mapping[str, str] | None = None) -> None:
        self.remote = StateRemote(url, workdir, env)
        self.identity = identity
        self.reader = Reader(self.remote.store)
        self.rejected_pushes = 0

    def snapshot(self) -> Snapshot:
        return self.reader.read(self.remote.refs())

    def close(self) -> None:
        self.remote.close()

    # -- object helpers -------------------------------------------------------------------

    def _commit(self, record: Record, parents: tuple[str, ...], message: str) -> str:
        store = self.remote.store
        tree = store.single_file_tree(record.FILE, record.to_yaml())
        return store.write_commit(tree, parents, self.identity.ident, int(time.time()), message)

    def _cas(self, ref: str, new: str | None, old: str | None) -> bool:
        report = self.remote.push([RefUpdate(ref, new, old)])
        if not report.ok:
            self.rejected_pushes += 1
        return report.ok

    # -- claims ---------------------------------------------------------------------------

    def claim(self, snap: Snapshot, task: TaskView, lease: float) -> Held | Result | None:
        """Try to take ``task``. Held on success, the Result written instead when its last
        attempt was lost, None when another writer won."""
        assert task.spec is not None
        view = snap.claims.get(task.key)
        now = time.time()
        attempt, parent, takeover = 1, None, None
        if view is not None:
            record = view.record
            if isinstance(record, Result):
                return None
            parent = view.tip
            if isinstance(record, Release):
                attempt = next_attempt(record.attempt, record.counted)
            else:  # an expired claim, taken over: it counts (cluster.state.statuses.EXPIRED)
                settled = settle(EXPIRED, record.attempt, task.spec.max_attempts)
                if not isinstance(settled, Retry):
                    lost = Result(
                        task=task.key, status=settled, attempt=record.attempt,
                        agent=record.agent, started_at=record.claimed_at, finished_at=now,
                        reason=f"lease of {record.agent} expired on the last attempt "
                               f"({record.attempt} of {task.spec.max_attempts})",
                    )
                    return lost if self.write_terminal(snap, task.key, lost, view.tip) else None
                attempt, takeover = next_attempt(record.attempt, settled.counted), view.tip
        claim = Claim(
            task=task.key, agent=self.identity.name, host=self.identity.host,
            pid=self.identity.pid, attempt=attempt, claimed_at=now, renewed_at=now,
            expires_at=now + lease, lease_seconds=lease, task_blob=task.blob,
            takeover_of=takeover,
        )
        verb = "take over" if takeover else "claim"
        message = f"{verb} {task.key} attempt {attempt} by {self.identity.name}"
        tip = self._commit(claim, (parent,) if parent else (), message)
        if not self._write(snap, task.key, tip, parent):
            return None
        return Held(task.key, tip, claim, task)

    def _write(self, snap: Snapshot, key: str, tip: str, parent: str | None) -> bool:
        """CAS ``key``'s claim ref from ``parent`` to ``tip``. A ref created from nothing is
        withdrawn when a fold archived the task after ``snap`` was read: the fold had deleted
        the ref this CAS expected absent (see the protocol: Claim)."""
        if not self._cas(claim_ref(key), tip, parent):
            return False
        if parent is None and self._archived_since(snap, key):
            self._cas(claim_ref(key), None, tip)  # withdrawn: it was finished already
            return False
        return True

    def _archived_since(self, snap: Snapshot, key: str) -> bool:
        """Did a fold archive ``key`` after ``snap`` was read? (See the protocol: Claim.)"""
        main = self.remote.refs((MAIN,)).get(MAIN)  # main alone: one ref listed, no claims
        if main is None or main == snap.main:
            return False
        store = self.remote.store
        tree = store.tree(store.commit(main).tree)
        for part in archive_path(key).split("/"):
            entry = tree.get(part)
            if entry is None or not entry.is_tree:
                return False
            tree = store.tree(entry.sha)
        return True

    def renew(self, held: Sequence[Held], heartbeat: Heartbeat | None,
              heartbeat_tip: str | None) -> tuple[dict[str, Held], set[str], str | None]:
        """Extend every lease in one push (with the heartbeat). Returns the renewed claims,
        the keys whose claim was lost, and the new heartbeat tip."""
        now = time.time()
        updates: list[RefUpdate] = []
        renewed: dict[str, Held] = {}
        for item in held:
            claim = dataclasses.replace(
                item.claim, renewed_at=now, expires_at=now + item.claim.lease_seconds
            )
            commit = self.remote.store.commit(item.tip)
            message = commit.message
            tip = self._commit(claim, commit.parents, message)
            renewed[item.key] = dataclasses.replace(item, tip=tip, claim=claim)
            updates.append(RefUpdate(claim_ref(item.key), tip, item.tip))
        new_hb_tip = None
        if heartbeat is not None:
            new_hb_tip = self._commit(heartbeat, (), f"heartbeat {heartbeat.id}")
            updates.append(RefUpdate(agent_ref(heartbeat.id), new_hb_tip, heartbeat_tip))
        if not updates:
            return {}, set(), heartbeat_tip
        report = self.remote.push(updates)
        lost = {key for key in renewed if claim_ref(key) in report.rejected}
        self.rejected_pushes += len(report.rejected)
        if lost:  # only a claim ref that moved is lost; one whose lock was held is still ours
            for item in self._unmoved([h for h in held if h.key in lost]):
                lost.discard(item.key)
                renewed[item.key] = item
        if heartbeat is not None and agent_ref(heartbeat.id) in report.rejected:
            # Someone else wrote our heartbeat ref (a restarted twin): start over unconditionally.
            refs = self.remote.refs()
            retry = self.remote.push(
                [RefUpdate(agent_ref(heartbeat.id), new_hb_tip, refs.get(agent_ref(heartbeat.id)))]
            )
            if not retry.ok:
                new_hb_tip = heartbeat_tip
        return ({k: v for k, v in renewed.items() if k not in lost}, lost, new_hb_tip)

    def finish(self, held: Held, record: Result | Release) -> bool:
        """Publish the attempt's outcome on top of our own claim: False means fenced off."""
        if isinstance(record, Result):
            record = stamped(record)
        verb = "result" if isinstance(record, Result) else "release"
        message = f"{verb} {held.key}: {record.status} (attempt {record.attempt}, {record.agent})"
        tip = self._commit(record, (held.tip,), message)
        if self._cas(claim_ref(held.key), tip, held.tip):
            return True
        if self._unmoved([held]):
            # Still ours: the write failed for another reason (a lock held for a moment).
            raise RemoteUnavailable(f"could not publish {held.key} yet; will retry")
        return False

    def _unmoved(self, held: Sequence[Held]) -> list[Held]:
        """Those of ``held`` whose claim ref still holds their commit (a refused write whose
        ref did not move was stopped by a lock, not by another writer)."""
        refs = self.remote.refs()
        return [item for item in held if refs.get(claim_ref(item.key)) == item.tip]

    def write_terminal(self, snap: Snapshot, key: str, result: Result,
                       expected: str | None) -> bool:
        """A terminal result without a claim (invalid, dependency failed, cancel, lost)."""
        result = stamped(result)
        message = f"result {key}: {result.status} ({result.reason or result.agent})"
        tip = self._commit(result, (expected,) if expected else (), message)
        return self._write(snap, key, tip, expected)

    def stop_heartbeat(self, heartbeat: Heartbeat, tip: str | None) -> None:
        new = self._commit(heartbeat, (), f"heartbeat {heartbeat.id}")
        self.remote.push([RefUpdate(agent_ref(heartbeat.id), new, tip)])

    # -- fold -----------------------------------------------------------------------------

    def fold(self, snap: Snapshot, limit: int) -> int:
        """Archive up to ``limit`` finished tasks into main in one atomic push."""
        keys = sorted(snap.terminal_keys())[:limit]
        if not keys or snap.main is None:
            return 0
        store = self.remote.store
        main = store.commit(snap.main)
        editor = TreeEditor(store, main.tree)
        lines = []
        for key in keys:
            view = snap.claims[key]
            assert isinstance(view.record, Result)
            lines.append(f"{key}: {view.record.status}")
            base = archive_path(key)
            # An id used twice (the hooks refuse it) keeps both histories side by side.
            suffix = f".{view.tip[:12]}" if key in snap.archived else ""
            task = snap.tasks.get(key)
            if task is not None:
                editor.remove(task.path)
                if task.is_file:
                    editor.put(f"{base}/task{suffix}.yaml", task.blob)
            editor.put(f"{base}/result{suffix}.yaml", store.write_blob(view.record.to_yaml()))
        tree = editor.write()
        parents = (snap.main, *(snap.claims[k].tip for k in keys))
        message = f"fold {len(keys)} finished task(s) into archive/\n\n" + "\n".join(lines)
        commit = store.write_commit(tree, parents, self.identity.ident, int(time.time()), message)
        updates = [RefUpdate(MAIN, commit, snap.main)]
        updates += [RefUpdate(claim_ref(k), None, snap.claims[k].tip) for k in keys]
        report = self.remote.push(updates, atomic=True)
        if not report.ok:
            self.rejected_pushes += 1
            return 0
        return len(keys)
