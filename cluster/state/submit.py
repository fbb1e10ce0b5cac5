"""People's writes to main: submit task files (validated first) and cancel tasks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ClusterError, ValidationError
from cluster.state.client import StateClient
from cluster.state.gitcmd import RefUpdate
from cluster.state.gitobj import TreeEditor
from cluster.state.ids import MAIN, TASKS_DIR
from cluster.state.records import Result
from cluster.state.schema import TaskSpec, parse_task
from cluster.state.snapshot import Snapshot

MAX_TRIES = 20


@dataclass(frozen=True)
class TaskFile:
    name: str
    data: bytes
    spec: TaskSpec


def validate_files(paths: Sequence[Path], snap: Snapshot) -> list[TaskFile]:
    """Validate every file against the schema and the repo; raise with all problems at once."""
    problems: list[str] = []
    files: list[TaskFile] = []
    seen: set[str] = set()
    known = snap.settings.known_specialties
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
            continue
        try:
            spec = parse_task(str(path), data, known)
        except ValidationError as exc:
            problems.append(str(exc))
            continue
        if spec.id in seen:
            problems.append(f"{path}: id {spec.id!r} given twice")
        elif snap.known(spec.id):
            problems.append(f"{path}: id {spec.id!r} is already used in the state repo")
        for dep in spec.depends_on:
            if not snap.known(dep) and dep not in {p.stem for p in paths}:
                problems.append(f"{path}: field 'depends_on': unknown task {dep!r}")
        seen.add(spec.id)
        files.append(TaskFile(f"{spec.id}.yaml", data, spec))
    if problems:
        raise ValidationError("task submit", problems)
    return files


class MainMoved(ClusterError):
    """Main is no longer the commit the files were planned on (``submit``'s ``expect_main``)."""


def submit(client: StateClient, paths: Sequence[Path],
           expect_main: str | None = None) -> tuple[str, list[str]]:
    """Commit the files under tasks/ on main; rebases and retries when main moved, unless
    ``expect_main`` says what they were written for: then :class:`MainMoved`, for the caller
    to plan again (what it wrote depends on main: a follow-up's round, say)."""
    for _ in range(MAX_TRIES):
        snap = client.snapshot()
        if snap.main is None:
            raise ClusterError(f"{client.remote.url} has no main branch: run 'state init' first")
        if expect_main is not None and snap.main != expect_main:
            raise MainMoved(f"{client.remote.url}: main moved from {expect_main[:12]} to "
                            f"{snap.main[:12]} since these tasks were planned")
        files = validate_files(paths, snap)
        store = client.remote.store
        editor = TreeEditor(store, store.commit(snap.main).tree)
        for item in files:
            editor.put(f"{TASKS_DIR}/{item.name}", store.write_blob(item.data))
        ids = [f.spec.id for f in files]
        message = f"submit {len(ids)} task(s): {', '.join(ids[:10])}" + (
            " ..." if len(ids) > 10 else ""
        )
        commit = store.write_commit(
            editor.write(), (snap.main,), client.identity.ident, int(time.time()), message
        )
        if client.remote.push([RefUpdate(MAIN, commit, snap.main)]).ok:
            return commit, ids
    raise ClusterError(f"main of {client.remote.url} kept moving: gave up after {MAX_TRIES} tries")


def cancel(client: StateClient, key: str, reason: str) -> Result:
    """End ``key`` as cancelled; a live holder is fenced off by the new tip."""
    for _ in range(MAX_TRIES):
        snap = client.snapshot()
        state = snap.state(key)
        if state == "unknown":
            raise ClusterError(f"task {key!r} is not in the state repo")
        existing = snap.result(key)
        if existing is not None:
            raise ClusterError(f"task {key!r} already finished: {existing.status}")
        view = snap.claims.get(key)
        attempt = view.record.attempt if view else 0
        result = Result(task=key, status="cancelled", attempt=attempt,
                        agent=client.identity.name, reason=reason)
        if client.write_terminal(snap, key, result, view.tip if view else None):
            return result
    raise ClusterError(f"task {key!r} kept changing: gave up cancelling after {MAX_TRIES} tries")
