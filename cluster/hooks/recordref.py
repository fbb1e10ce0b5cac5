"""Reading the one record a commit on a claim or agent ref holds, with a reason when it can't."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from cluster.errors import GitError
from cluster.state.gitobj import ObjectStore
from cluster.state.records import (
    TERMINAL,
    ClaimRecord,
    Heartbeat,
    Release,
    Result,
    load_claim_record,
    load_heartbeat,
)
from cluster.state.statuses import RELEASE_STATUSES

CLAIM_FILES = ("claim.yaml", "release.yaml", "result.yaml")


@dataclass(frozen=True)
class Read:
    """A commit's parents and record, or ``problem`` saying why there is no record."""

    parents: tuple[str, ...]
    record: ClaimRecord | Heartbeat | None
    problem: str | None = None
    name: str = ""


def read_record(store: ObjectStore, sha: str, names: tuple[str, ...]) -> Read:
    try:
        commit = store.commit(sha)
        entries = store.tree(commit.tree)
    except GitError as exc:
        return Read((), None, f"cannot read commit {sha[:12]}: {exc}")
    files = [n for n, e in entries.items() if not e.is_tree]
    if len(entries) != 1 or len(files) != 1 or files[0] not in names:
        found = ", ".join(sorted(entries)) or "nothing"
        return Read(commit.parents, None,
                    f"the commit's tree must hold exactly one of {', '.join(names)} "
                    f"(found {found})")
    name = files[0]
    try:
        data = store.blob(entries[name].sha)
        record = load_heartbeat(data) if name == "agent.yaml" else load_claim_record(name, data)
    except (GitError, ValueError, TypeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Read(commit.parents, None, f"{name}: not a valid record: {reason}", name)
    return Read(commit.parents, record, _field_problem(record, name), name)


def _field_problem(record: ClaimRecord | Heartbeat, name: str) -> str | None:
    if isinstance(record, Result) and record.status not in TERMINAL:
        return f"{name}: field 'status': {record.status!r} is not one of {', '.join(TERMINAL)}"
    if isinstance(record, Release) and record.status not in RELEASE_STATUSES:
        return (f"{name}: field 'status': {record.status!r} is not one of "
                f"{', '.join(RELEASE_STATUSES)}")
    return None


def tip_result(store: ObjectStore, sha: str) -> Result | None:
    read = read_record(store, sha, CLAIM_FILES)
    return read.record if isinstance(read.record, Result) else None
