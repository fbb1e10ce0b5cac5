"""``maintain``: prune old results out of main's archive/, drop dead heartbeats, git gc.

Pruned results stay in main's history (and in every backup's bundle): the prune is one
ordinary commit on main, pushed with a lease on main like a submit, retried when main moved.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.backup.errors import BackupError
from cluster.backup.settings import BackupSettings
from cluster.backup.source import LocalRepo, SshRepo, StateSource, parse_state
from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import RefUpdate, run_git
from cluster.state.gitobj import TreeEditor
from cluster.state.history import added
from cluster.state.ids import ARCHIVE_DIR, MAIN, agent_ref, archive_path
from cluster.state.snapshot import Snapshot
from cluster.transport import connect, run

MAX_TRIES = 20
GC_TIMEOUT = 1800.0
MAINTAINER = "claude-cluster-maintain"


@dataclass
class MaintainOutcome:
    pruned: list[str] = field(default_factory=list)  # archived task ids taken off main
    kept_for_dependents: list[str] = field(default_factory=list)
    commit: str | None = None
    heartbeats_deleted: list[str] = field(default_factory=list)
    gc: str = "skipped"


def maintain(settings: BackupSettings, now: float | None = None) -> MaintainOutcome:
    """Prune, delete stale heartbeats, then ``git gc`` where the repo lives."""
    now = time.time() if now is None else now
    url = settings.state_url()
    source = parse_state(url)
    outcome = MaintainOutcome()
    with tempfile.TemporaryDirectory(prefix="ccc-maintain-") as work:
        client = StateClient(url, Path(work), Identity(MAINTAINER))
        try:
            prune_archive(client, now - settings.archive_days * 86400, outcome)
            delete_heartbeats(client, now - settings.agent_days * 86400, outcome)
        finally:
            client.close()
    outcome.gc = gc(source, settings)
    return outcome


def archived_at(git_dir: Path, main: str) -> dict[str, float]:
    """When each archived task last landed in archive/ (its fold commit's time)."""
    out: dict[str, float] = {}
    for item in added(git_dir, main, ARCHIVE_DIR):
        if item.path.count("/") == 3:
            out.setdefault(item.path.split("/")[2], item.time)  # newest first: the latest
    return out


def prune_archive(client: StateClient, cutoff: float, outcome: MaintainOutcome) -> None:
    for _ in range(MAX_TRIES):
        snap = client.snapshot()
        if snap.main is None:
            raise BackupError(f"{client.remote.url} has no main branch")
        doomed, kept = _choose(client, snap, cutoff)
        outcome.kept_for_dependents = kept
        if not doomed:
            return
        store = client.remote.store
        editor = TreeEditor(store, store.commit(snap.main).tree)
        for key in doomed:
            for name in snap.archived[key]:
                editor.remove(f"{archive_path(key)}/{name}")
        message = (f"maintain: prune {len(doomed)} archived result(s) out of {ARCHIVE_DIR}/\n\n"
                   "They stay in this commit's history.\n\n" + "\n".join(doomed))  # fmt: skip
        commit = store.write_commit(editor.write(), (snap.main,), client.identity.ident,
                                    int(time.time()), message)  # fmt: skip
        if client.remote.push([RefUpdate(MAIN, commit, snap.main)]).ok:
            outcome.pruned, outcome.commit = doomed, commit
            return
    raise BackupError(f"main of {client.remote.url} kept moving: gave up after {MAX_TRIES} tries")


def _choose(client: StateClient, snap: Snapshot, cutoff: float) -> tuple[list[str], list[str]]:
    """Archived keys older than ``cutoff``, except those a task still on main depends on."""
    assert snap.main is not None
    landed = archived_at(client.remote.store.git_dir, snap.main)
    needed = {dep for task in snap.tasks.values() if task.spec for dep in task.spec.depends_on}
    old = sorted(k for k in snap.archived if landed.get(k, cutoff) < cutoff)
    return [k for k in old if k not in needed and k not in snap.claims], sorted(
        set(old) & needed)


def delete_heartbeats(client: StateClient, cutoff: float, outcome: MaintainOutcome) -> None:
    """CAS-delete refs/agents/<id> last seen before ``cutoff`` (a live agent wins the race)."""
    refs = client.remote.refs()
    snap = client.reader.read(refs)
    stale = sorted(a for a, hb in snap.agents.items() if hb.last_seen < cutoff)
    updates = [RefUpdate(agent_ref(a), None, refs[agent_ref(a)]) for a in stale]
    if updates:
        report = client.remote.push(updates)
        outcome.heartbeats_deleted = sorted(
            a for a in stale if agent_ref(a) in report.accepted)


def gc(source: StateSource, settings: BackupSettings) -> str:
    """``git gc`` on the host that holds the repo; what was done, for the report."""
    if isinstance(source, LocalRepo):
        run_git(["gc", "--quiet"], git_dir=source.path, timeout=GC_TIMEOUT)
        return f"git gc on {source.path}"
    if isinstance(source, SshRepo):
        key, known = settings.ssh_access()
        with connect(source.host, source.port, source.user, key, known,
                     timeout=settings.connect_timeout) as conn:  # fmt: skip
            run(conn, ["git", "--git-dir", source.path, "gc", "--quiet"], timeout=GC_TIMEOUT)
        return f"git gc on {source}"
    return f"skipped: git gc runs where {source.url} is hosted"
