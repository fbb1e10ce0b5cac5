"""File planned tasks in one submit commit, skipping ids the state repo already knows.

One mechanism for every intake: a planner reads a snapshot and says, per item, the task to
file (:class:`Planned`), that its task exists already (:class:`Known`) or why it is none (a
line); :func:`file_planned` commits the new ones at once and plans again on a fresh snapshot
when another intake used one of the ids meanwhile, so nothing is filed twice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.errors import ClusterError, ValidationError
from cluster.intake.issues import Issue
from cluster.intake.taskdoc import Known, Planned, Policy, plan
from cluster.state.client import StateClient
from cluster.state.snapshot import Snapshot
from cluster.state.submit import MainMoved, submit

MAX_TRIES = 10
Planner = Callable[[Snapshot], Iterable[Planned | Known | str]]


@dataclass
class Filed:
    """What one intake pass did: tasks created (in ``commit``), already known, skipped."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    commit: str | None = None

    def summary(self) -> str:
        parts = [f"created {len(self.created)}" + (f": {', '.join(self.created)}"
                                                   if self.created else "")]
        parts.append(f"{len(self.existing)} already filed")
        parts += [f"skipped {line}" for line in self.skipped]
        return "; ".join(parts)

    def merged(self, other: Filed) -> Filed:
        """Both passes' lines (the commit of the later one that made one)."""
        return Filed(self.created + other.created, self.existing + other.existing,
                     self.skipped + other.skipped, other.commit or self.commit)


def file_planned(client: StateClient, planner: Planner) -> Filed:
    """File what ``planner`` plans on the state repo's snapshot, in one commit; never an id
    twice, however often it is planned (here, or by another intake at the same time)."""
    for _ in range(MAX_TRIES):
        snap = client.snapshot()
        filed = Filed()
        fresh: dict[str, Planned] = {}
        for got in planner(snap):
            if isinstance(got, str):
                filed.skipped.append(got)
            elif isinstance(got, Known) or snap.known(got.id) or got.id in fresh:
                filed.existing.append(got.id)
            else:
                fresh[got.id] = got
        if not fresh:
            return filed
        try:
            filed.commit, filed.created = _submit(client, list(fresh.values()), snap.main)
        except MainMoved:
            continue  # someone wrote main since this plan (another intake): plan again
        except ValidationError as exc:
            if any("already used" in problem for problem in exc.problems):
                continue  # another intake filed one of them meanwhile: look again
            raise
        return filed
    raise ClusterError(f"{client.remote.url}: tasks kept appearing under us; "
                       f"gave up after {MAX_TRIES} tries")


def file_issues(client: StateClient, issues: Sequence[Issue], policy: Policy) -> Filed:
    """Turn ``issues`` into tasks; never two tasks for one issue, however often it is seen."""
    return file_planned(client, lambda snap: [
        plan(issue, policy, snap.settings.known_specialties) for issue in issues])


def _submit(client: StateClient, planned: list[Planned],
            main: str | None) -> tuple[str, list[str]]:
    with tempfile.TemporaryDirectory(prefix="intake-") as tmp:
        paths = []
        for item in planned:
            path = Path(tmp) / f"{item.id}.yaml"
            path.write_bytes(item.data)
            paths.append(path)
        return submit(client, paths, main)
