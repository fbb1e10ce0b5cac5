"""A history checker: classifies every task ever submitted from the state repo's git history.

done    exactly one accepted terminal result, on one linear claim chain
dup     two accepted results, or two claim chains for one task (two holders at once)
lost    no terminal result (yet: run it once the cluster has drained)
stale   a result accepted from a holder whose claim had been taken over
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.errors import GitError
from cluster.state.gitcmd import list_refs, run_git
from cluster.state.gitobj import ObjectStore
from cluster.state.history import added
from cluster.state.ids import MAIN, TASKS_DIR
from cluster.state.records import Claim, ClaimRecord, Release, Result, load_claim_record
from cluster.state.snapshot import entry_key


@dataclass
class TaskHistory:
    key: str
    records: dict[str, ClaimRecord] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def verdict(self) -> tuple[str, str]:
        results = [sha for sha, r in self.records.items() if isinstance(r, Result)]
        roots = [sha for sha, p in self.parents.items()
                 if not any(q in self.records for q in p)]
        if len(results) > 1:
            return "dup", f"{len(results)} accepted results"
        if len(roots) > 1:
            return "dup", f"{len(roots)} separate claim chains"
        children: dict[str, list[str]] = defaultdict(list)
        for sha, parents in self.parents.items():
            for parent in parents:
                if parent in self.records:
                    children[parent].append(sha)
        forks = [sha for sha, kids in children.items() if len(kids) > 1]
        if forks:
            return "dup", f"claim {forks[0][:12]} has {len(children[forks[0]])} successors"
        if not results:
            return "lost", "no terminal result"
        result = self.records[results[0]]
        assert isinstance(result, Result)
        below = next((p for p in self.parents[results[0]] if p in self.records), None)
        holder = self.records.get(below) if below else None
        # A cancel fences the holder on purpose; any other result must come from the holder.
        if isinstance(holder, Claim) and result.status != "cancelled" and (
            holder.agent != result.agent
        ):
            return "stale", f"result by {result.agent} on a claim held by {holder.agent}"
        return "done", result.status

    def attempts(self) -> int:
        return sum(1 for r in self.records.values() if isinstance(r, Claim))

    def takeovers(self) -> int:
        return sum(1 for r in self.records.values() if isinstance(r, Claim) and r.takeover_of)


@dataclass
class Report:
    tasks: dict[str, tuple[str, str]]
    histories: dict[str, TaskHistory]

    def count(self, verdict: str) -> int:
        return sum(1 for v, _ in self.tasks.values() if v == verdict)

    def summary(self) -> dict[str, Any]:
        statuses: dict[str, int] = defaultdict(int)
        for verdict, detail in self.tasks.values():
            if verdict == "done":
                statuses[detail] += 1
        return {
            "tasks": len(self.tasks), "done": self.count("done"), "duplicated": self.count("dup"),
            "lost": self.count("lost"), "stale": self.count("stale"),
            "statuses": dict(statuses),
            "takeovers": sum(h.takeovers() for h in self.histories.values()),
        }

    def problems(self) -> dict[str, tuple[str, str]]:
        return {k: v for k, v in self.tasks.items() if v[0] != "done"}


def check(repo: Path) -> Report:
    """Read every commit reachable from main and the claim refs of the bare repo ``repo``."""
    refs = list_refs([MAIN, "refs/claims"], git_dir=repo)
    keys = _submitted([item.path for item in added(repo, MAIN, TASKS_DIR)])
    walk = run_git(["rev-list", "--parents", *sorted(set(refs.values()))], git_dir=repo).stdout
    store = ObjectStore(repo)
    histories: dict[str, TaskHistory] = {}
    try:
        for line in walk.splitlines():
            sha, *parents = line.split()
            record = record_at(store, sha)
            if record is None:
                continue
            history = histories.setdefault(record.task, TaskHistory(record.task))
            history.records[sha] = record
            history.parents[sha] = tuple(parents)
    finally:
        store.close()
    verdicts = {key: histories.get(key, TaskHistory(key)).verdict() for key in keys}
    return Report(verdicts, histories)


def _submitted(paths: list[str]) -> set[str]:
    """The keys of the task entries that ``paths`` (files added under ``tasks/``) brought:
    a file nested deeper (``tasks/dir.yaml/x``) belongs to the entry directly under
    ``tasks/`` (``dir.yaml``), which the agents judge, by the readers' own rule."""
    keys = set()
    for path in paths:
        if not path.startswith(f"{TASKS_DIR}/"):
            continue
        key = entry_key(path[len(TASKS_DIR) + 1:].split("/", 1)[0])
        if key is not None:
            keys.add(key)
    return keys


def record_at(store: ObjectStore, sha: str) -> ClaimRecord | None:
    """The claim, release or result that commit ``sha`` of a claim ref holds (None: not one)."""
    try:
        tree = store.tree(store.commit(sha).tree)
        if len(tree) != 1:
            return None
        ((name, entry),) = tree.items()
        if name not in (Claim.FILE, Release.FILE, Result.FILE):
            return None
        return load_claim_record(name, store.blob(entry.sha))
    except (GitError, ValueError, TypeError):
        return None
