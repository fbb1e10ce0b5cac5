"""The chaos scenario: submit tasks in batches while faults play, drain, check the history."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from cluster.chaos.bed import Bed
from cluster.chaos.hostlogs import EventCounts, agent_state, read_events
from cluster.chaos.inject import FaultRecord, Injector
from cluster.chaos.reclaim import Reclaim, reclaims
from cluster.chaos.schedule import plan
from cluster.errors import ClusterError
from cluster.state.checker import Report, check
from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import run_git
from cluster.state.records import TERMINAL, Claim
from cluster.state.submit import submit
from cluster.testhosts.readiness import NotReady, poll, ssh_banner


@dataclass(frozen=True)
class Scenario:
    tasks: int = 100
    batches: int = 4
    seed: int = 0
    fault_seconds: float = 60.0  # faults start within this window
    faults: int = 12
    finish_timeout: float = 360.0  # after the last batch, for every task to be terminal
    recover_timeout: float = 90.0  # for every agent to heartbeat again after the faults


@dataclass
class Outcome:
    ids: list[str]
    report: Report
    faults: list[FaultRecord]
    skipped: int
    reclaims: list[Reclaim]
    events: EventCounts
    lease: float
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def run_scenario(bed: Bed, scenario: Scenario) -> Outcome:
    started = time.monotonic()
    with _control_ssh(bed.state.control_ssh_command):
        client = StateClient(bed.state.control_url, bed.work / "control", Identity("chaos"))
        watcher = StateClient(bed.state.control_url, bed.work / "watcher", Identity("chaos-w"))
        try:
            injector = Injector(bed.names, bed.state.record.address, lambda: _holders(watcher),
                                seed=scenario.seed)  # fmt: skip
            ids = _submit_under_faults(bed, scenario, client, injector)
            try:
                _poll(lambda: _all_terminal(client, ids), "every task terminal",
                      scenario.finish_timeout)  # fmt: skip
            except NotReady as exc:
                raise NotReady(f"{exc}\n{_why_not_terminal(client, bed, ids)}") from exc
            try:
                _poll(lambda: _all_back(client, bed), "every agent heartbeating again",
                      scenario.recover_timeout)  # fmt: skip
            except NotReady as exc:
                raise NotReady(f"{exc}\n{_why_not_back(client, bed, injector.records)}") from exc
        finally:
            watcher.close()
            client.close()
        report = _check_mirror(bed)
    found = reclaims(report, injector.records)
    outcome = Outcome(ids, report, injector.records, len(injector.skipped), found,
                      read_events(bed.names), bed.lease, time.monotonic() - started)  # fmt: skip
    outcome.summary = report.summary()
    return outcome


def _submit_under_faults(bed: Bed, scenario: Scenario, client: StateClient,
                         injector: Injector) -> list[str]:  # fmt: skip
    schedule = plan(scenario.seed, scenario.fault_seconds, scenario.faults, bed.lease)
    failure: list[BaseException] = []

    def play() -> None:
        try:
            injector.run(schedule)
        except BaseException as exc:  # re-raised in the caller thread
            failure.append(exc)

    thread = threading.Thread(target=play, name="chaos-injector")
    thread.start()
    ids: list[str] = []
    try:
        rng = random.Random(scenario.seed)
        gap = scenario.fault_seconds / max(scenario.batches, 1)
        begin = time.monotonic()
        for batch in range(scenario.batches):
            time.sleep(max(0.0, begin + batch * gap - time.monotonic()))  # pacing, not readiness
            ids += _submit_batch(bed, client, scenario, batch, rng)
    except BaseException:
        injector.abort()
        raise
    finally:
        thread.join()
    if failure:
        raise ClusterError(f"fault injector failed: {failure[0]}") from failure[0]
    return ids


def _submit_batch(bed: Bed, client: StateClient, scenario: Scenario, batch: int,
                  rng: random.Random) -> list[str]:  # fmt: skip
    numbers = range(scenario.tasks)[batch :: scenario.batches]
    folder = bed.work / "tasks" / f"batch-{batch}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in numbers:
        task_id = f"chaos-{scenario.seed}-{number:04d}"
        path = folder / f"{task_id}.yaml"
        path.write_text(yaml.safe_dump(_task(task_id, rng.uniform(0.2, 2.0))))
        paths.append(path)
    _, ids = submit(client, paths)
    return list(ids)


def _task(task_id: str, seconds: float) -> dict[str, Any]:
    return {"id": task_id, "title": f"chaos {task_id}", "specialty": "backend",
            "repo": "demo/sample", "timeout": 120, "max_attempts": 6,
            "executor": {"kind": "command", "command": f"sleep {seconds:.2f}"}}  # fmt: skip


def _holders(client: StateClient) -> dict[str, list[str]]:
    snap, now = client.snapshot(), time.time()
    held: dict[str, list[str]] = {}
    for key, view in snap.claims.items():
        record = view.record
        if isinstance(record, Claim) and record.expires_at > now:
            held.setdefault(record.agent, []).append(key)
    return held


def _all_terminal(client: StateClient, ids: list[str]) -> tuple[bool, str]:
    snap = client.snapshot()
    left = [i for i in ids if snap.state(i) not in TERMINAL]
    return not left, f"{len(left)} of {len(ids)} not terminal, e.g. {left[:3]}"


def _why_not_terminal(client: StateClient, bed: Bed, ids: list[str]) -> str:
    """For a few tasks left unfinished: their state and record; then each agent's heartbeat
    and the last lines of its journal."""
    snap = client.snapshot()
    out = []
    for key in [i for i in ids if snap.state(i) not in TERMINAL][:5]:
        view = snap.claims.get(key)
        record = view.record if view else None
        out.append(f"{key}: {snap.state(key)} {record!r}"[:400])
    for name in bed.names:
        beat = snap.agents.get(name)
        seen = f"{beat.state}, holding {list(beat.holding)}" if beat else "no heartbeat"
        out.append(f"heartbeat {name}: {seen}\n{agent_state(name, lines=25)}")
    return "\n".join(out)


def _all_back(client: StateClient, bed: Bed) -> tuple[bool, str]:
    online = {hb.id for hb in client.snapshot().online_agents()}
    missing = [n for n in bed.names if n not in online]
    ports = [h.port for h in bed.hosts.hosts if not ssh_banner(h.port)[0]]
    return not missing and not ports, f"offline agents {missing}, sshd down on ports {ports}"


def _why_not_back(client: StateClient, bed: Bed, faults: list[FaultRecord]) -> str:
    """For each agent not back: the faults it had, its unit and its journal."""
    online = {hb.id for hb in client.snapshot().online_agents()}
    out = []
    for name in (n for n in bed.names if n not in online):
        had = [f"{f.kind} at {f.at:.0f} for {f.seconds:.0f}s ({f.detail})"
               for f in faults if f.host == name]  # fmt: skip
        out.append(f"faults on {name}: {'; '.join(had) or 'none'}\n{agent_state(name)}")
    return "\n".join(out)


def _poll(check: Callable[[], tuple[bool, str]], what: str, timeout: float) -> None:
    poll(check, what=what, timeout=timeout, interval=2.0)  # each look is an SSH fetch


def _check_mirror(bed: Bed) -> Report:
    mirror = bed.work / "mirror.git"
    run_git(["clone", "--quiet", "--mirror", bed.state.control_url, str(mirror)])
    return check(mirror)


@contextmanager
def _control_ssh(command: str) -> Iterator[None]:
    """GIT_SSH_COMMAND for the control host's git (the state client and the mirror clone)."""
    before = os.environ.get("GIT_SSH_COMMAND")
    os.environ["GIT_SSH_COMMAND"] = command
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GIT_SSH_COMMAND", None)
        else:
            os.environ["GIT_SSH_COMMAND"] = before
