"""The agent's claim loop: reconcile with the remote, claim, renew, publish, fold, repeat."""

from __future__ import annotations

import math
import queue
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import cast

from cluster import __version__
from cluster.agent.choose import (
    LINE_WINDOW,
    claimable,
    dependency_verdict,
    due,
    elected,
    fold_turn,
    later,
    line,
    place,
    turns,
)
from cluster.agent.config import AgentConfig
from cluster.agent.credentials import MAX_PAUSE, Pause, shared_pause
from cluster.agent.events import EventLog
from cluster.agent.metrics import Metrics
from cluster.agent.pace import Pace
from cluster.agent.pushes import HOUR, IN_PLACE, CountedRemote
from cluster.agent.runner import AttemptReport, Runner
from cluster.errors import ClusterError
from cluster.state.client import Held, StateClient
from cluster.state.gitcmd import RefUpdate
from cluster.state.ids import agent_ref
from cluster.state.records import ONLINE_BEATS, Claim, Heartbeat, Release, Result, stamp
from cluster.state.remote import StateRemote
from cluster.state.remotewatch import for_remote
from cluster.state.session import attach
from cluster.state.snapshot import Snapshot, TaskView
from cluster.state.statuses import AgentState, Retry, Terminal, is_terminal, settle
from cluster.state.watch import Waker, at_once

MAX_BACKOFF = 30.0
FOLD_BACKOFF = 60.0  # the longest wait after refused folds (unless fold_delay_seconds is more)
STREAMED_POLL = 30.0  # the poll, as a safety net, while the state host streams main's moves
# Tasks an ssh state host tells have arrived are read by the first this many agents in each
# one's line (the owner and the next ones, a stagger apart); the rest learn of them at their
# next read, so that a landing costs the state host a few reads, not one per free agent.
TOLD_PLACES = 3
# A task whose claim was refused while its ref did not move (its lock held, by a live writer
# or a dead one: see cluster.state.reflocks) is skipped for a while, doubling up to the cap.
FIRST_COOL, MAX_COOL = 0.5, 8.0


@dataclass
class Running:
    held: Held
    cancel: threading.Event
    future: Future[AttemptReport]
    lost: bool = False
    report: AttemptReport | None = None  # finished but not yet published (remote away)


@dataclass(frozen=True)
class Cooling:
    tip: str | None  # the task's claim ref when the claim was refused
    until: float
    delay: float


@dataclass
class LoopState:
    running: dict[str, Running] = field(default_factory=dict)
    heartbeat_tip: str | None = None
    last_renew: float = 0.0
    last_read: float = 0.0  # when the last snapshot was read (the poll counts from it)
    last_beat: float = 0.0  # hosted profile: when the remote last took our heartbeat
    fold_retry_at: float = 0.0  # a refused fold is tried again no sooner
    # A task our refused folds would have archived, and how many were refused in a row.
    fold_refused: tuple[str, int] | None = None
    pause: Pause | None = None  # this agent's own: an attempt met a limit
    fleet: Pause | None = None  # adopted from the heartbeat of an agent sharing a credential
    skew: float = 0.0  # the repo's clock-skew allowance, added to an adopted pause's end
    blocked: str | None = None  # why the model API refused the credential: no more claims
    stopping: bool = False
    stop_at: float = 0.0
    backoff: float = 0.0
    idle_since: float | None = None
    first_seen: dict[str, float] = field(default_factory=dict)
    waiting_for: str = "poll"  # the deadline the next wait ends at, unless woken first
    woke: str | None = None  # what ended the last wait early (None: its deadline came)
    cooling: dict[str, Cooling] = field(default_factory=dict)
    done: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    replays_seen: set[str] = field(default_factory=set)
    unarchived_seen: list[str] = field(default_factory=list)
    # What _report_history last looked at: main, and the folded ids with a claim ref.
    history_seen: tuple[str | None, frozenset[str]] | None = None


class Agent:
    def __init__(self, config: AgentConfig, runner: Runner, events: EventLog,
                 client: StateClient) -> None:
        self.config = config
        # Executor kind -> fingerprint of the model credential it uses: published in the
        # heartbeat so that agents sharing a credential share its usage windows. The runner
        # knows them (built from the secrets, read once: cluster.agent.build).
        self.credentials = dict(runner.credentials)
        self.runner = runner
        self.events = events
        self.client = client
        self.client.remote.on_stale_lock = lambda lock: self.events.emit(
            "stale_lock_cleared", lock=str(lock))
        self.client.remote.on_read = lambda kind: self.metrics.reads.labels(kind).inc()
        # A plain path wakes us when main moves (its ref files, watched here), an ssh or
        # file:// one when its host says so (its watch command, run here for file://); any
        # other is polled (events are hints either way).
        self.waker = Waker(self.client.remote.files)
        self.waker.stream = for_remote(config.state, config.state_watch_command,
                                       self.waker, self._watch_report,
                                       self.client.remote.env)  # fmt: skip
        self.waker.judge = self._told
        attach(self.client.remote, config.state_session_command)
        self.last_snap: Snapshot | None = None  # what the told arrivals are judged against
        # When the state host told of a task's arrival: its first sighting (the watch's
        # thread writes it, under the lock).
        self.told: dict[str, float] = {}
        self.told_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(config.max_tasks, thread_name_prefix=f"task-{config.id}")
        self.st = LoopState()
        self.pace = Pace()  # how fast this agent reads and claims: its fallbacks' stagger
        self.started_at = time.time()
        self.metrics = Metrics(config.id)
        self.in_place: deque[float] = deque()  # when our IN_PLACE pushes went out
        self.pushes = CountedRemote(client.remote, self._count_push)
        client.remote = cast(StateRemote, self.pushes)
        self.hosted = False  # the repo's profile, as the last snapshot said
        self.counters = {"claimed": 0, "succeeded": 0, "failed": 0, "invalid": 0, "released": 0,
                         "fenced": 0, "lost": 0, "folded": 0}

    def _count_push(self, kind: str) -> None:
        self.metrics.push(kind)
        if kind in IN_PLACE:
            self.in_place.append(time.time())

    def _beats_hour(self, now: float, *, rides: bool) -> int:
        """Our IN_PLACE pushes in the hour before ``now``, the one about to go out included
        unless this heartbeat rides on another write."""
        while self.in_place and self.in_place[0] < now - HOUR:
            self.in_place.popleft()
        return len(self.in_place) + (0 if rides else 1)

    # -- lifecycle ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Before the first claim: clear the locks a dead predecessor left in the mirror (it is
        this process's alone: cluster.agent.instance) and reach the state repo once, so that a
        wrong URL fails at start-up."""
        self.client.remote.clear_mirror_locks()
        self.client.remote.check()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.stop(f"signal {signal.Signals(signum).name}")

    def stop(self, why: str) -> None:
        if not self.st.stopping:
            self.st.stopping = True
            self.st.stop_at = time.time()
            self.events.emit("stopping", reason=why)
        self.waker.poke()

    def run(self) -> int:
        self.events.emit("started", specialties=list(self.config.specialties),
                         max_tasks=self.config.max_tasks, state=self.config.state)
        self.waker.start()
        server = None
        if self.config.metrics_port is not None:
            server = self.metrics.serve(self.config.metrics_port)
            self.events.emit("metrics", port=self.config.metrics_port)
        try:
            while True:
                timeout = self._iterate()
                if timeout is None:
                    break
                woke = self.st.woke = self.waker.wait(timeout, refs=self._would_claim())
                self.metrics.wakeups.labels(woke or self.st.waiting_for).inc()
        finally:
            self._shutdown()
            if server is not None:
                server.shutdown()
        return 0

    def _shutdown(self) -> None:
        for item in self.st.running.values():
            item.cancel.set()
        self.pool.shutdown(wait=True)
        try:
            snap = self.client.snapshot()
            self._collect(snap)
            hb = self._heartbeat(snap, state="stopped")
            with self._pushing("stop"):
                self.client.stop_heartbeat(hb, self.st.heartbeat_tip)
        except ClusterError as exc:
            self.events.emit("shutdown_incomplete", error=str(exc))
        self.waker.stop()
        self.client.close()
        self.events.emit("stopped", counters=dict(self.counters), pushes=self.metrics.pushed())

    # -- one iteration --------------------------------------------------------------------

    def _iterate(self) -> float | None:
        """Reconcile once; return how long to wait, or None to exit."""
        try:
            if self.st.running and self.last_snap is not None and not self.hosted:
                # Renew before the read: a slow read then delays no renewal (renewing after
                # it, a lease went unrenewed for the heartbeat interval plus the read).
                self._renew_if_due(self.last_snap)
            if (seen := self._beat_alone()) is not None:
                return self._next_wait(seen)
            read_at = self.st.last_read = time.time()
            snap = self.client.snapshot()
        except ClusterError as exc:
            return self._remote_trouble(exc)
        self.pace.saw_read(time.time() - read_at)
        self.last_snap = snap
        if self.st.backoff:
            self.events.emit("remote_back")
            self.st.backoff = 0.0
            self.waker.restart()
        self.hosted = snap.settings.hosted
        try:
            self._collect(snap)
            self._adopt_shared_pause(snap)
            if not self.hosted:
                self._renew_if_due(snap)
            elif self.st.heartbeat_tip is None:  # first say we are here: others match with us
                self._renew_hosted(snap)
            claimed = 0
            if self._would_claim():
                claimed = self._claim(snap, read_at)
            else:
                self.waker.turns({}, read_at)
            if self.hosted:  # after the claims, whose pushes may have carried the heartbeat
                self._notice_lost(snap, read_at)
                self._renew_hosted(snap)
            self._judge_bad_tasks(snap)
            self._report_history(snap)
            self._maybe_fold(snap, final=False)
            self.metrics.running.set(len(self.st.running))
        except ClusterError as exc:  # the remote went away mid-iteration: nothing is lost
            return self._remote_trouble(exc)
        if self.st.stopping and not self.st.running:
            return None
        if self.st.stopping and time.time() - self.st.stop_at > self.config.stop_grace_seconds:
            for item in self.st.running.values():
                item.cancel.set()  # past the grace period: stop and release what is held
        if claimed and len(self.st.running) < self.config.max_tasks:
            self.st.waiting_for = "claimed"
            return 0.0  # there may be more to take right away (with no free slot: a read less)
        if self.config.exit_when_idle and self._idle(snap):
            self._maybe_fold(self.client.snapshot(), final=True)
            return None
        return self._next_wait(snap)

    def _beat_alone(self) -> Snapshot | None:
        """Is this iteration a heartbeat alone (then the last read's snapshot, that the
        heartbeat went out with)? While the state host streams main's moves, an
        idle agent's iteration that only its heartbeat's deadline started pushes the
        heartbeat with what the last read saw, and reads nothing: the stream tells of new
        work and of claims, and the poll (STREAMED_POLL) is the reconciling read. An idle
        fleet's heartbeats then cost the state host a push each, not a read and a push. It
        reads when told of an arrival it stands later in line for and nothing since said it
        was read or claimed (its first three may all be busy) once their turns have passed
        (under a task stream nearly every heartbeat found an arrival told a moment before, and
        read), and a busy agent still reads after renewing (it learns of a cancel from the
        read)."""
        snap = self.last_snap
        if (snap is None or self.hosted or self.st.running or not self.waker.streaming
                or self.st.stopping or self.st.backoff or self.st.woke is not None
                or self.st.waiting_for != "heartbeat"
                or self.waker.unread(time.time() - TOLD_PLACES * self._stagger())):
            return None
        self._renew_if_due(snap)
        return snap

    def _remote_trouble(self, exc: Exception) -> float | None:
        self.st.backoff = min(MAX_BACKOFF, max(0.25, self.st.backoff * 2))
        self.st.waiting_for = "backoff"
        self.events.emit("remote_unavailable", error=str(exc), retry_in=round(self.st.backoff, 2))
        self.client.remote.reopen()
        if self.st.stopping and (
            not self.st.running or time.time() - self.st.stop_at > self.config.stop_grace_seconds
        ):
            return None  # what we still hold comes back to the fleet when its lease expires
        return self.st.backoff * random.uniform(0.5, 1.0)

    def _intervals(self, snap: Snapshot) -> tuple[float, float]:
        lease = self.config.lease_seconds or snap.settings.lease_seconds
        if snap.settings.hosted:  # the lease is sized per task (_lease); idle agents beat rarely
            return lease, self.config.heartbeat_seconds or snap.settings.idle_heartbeat
        beat = self.config.heartbeat_seconds or snap.settings.heartbeat_seconds
        return lease, min(beat, lease / 3)

    def _lease(self, snap: Snapshot, task: TaskView) -> float:
        """A claim's lease: the repo's, or under the hosted profile the task's timeout plus
        the repo's, so that an attempt ends before its lease needs a renewal."""
        lease, _ = self._intervals(snap)
        if snap.settings.hosted and task.spec is not None:
            return min(task.spec.timeout + lease, 86400.0 + lease)
        return lease

    @contextmanager
    def _pushing(self, kind: str, snap: Snapshot | None = None,
                 holding: set[str] | None = None) -> Iterator[None]:
        """Count the pushes of the block as ``kind``; under the hosted profile (``snap``
        given) the heartbeat, saying it holds ``holding`` once the write is in, rides on the
        block's first single-ref write."""
        self.pushes.kind, self.pushes.rode = kind, None
        heartbeat = None
        if snap is not None and snap.settings.hosted:
            heartbeat = self._heartbeat(snap, holding=holding, rides=True)
            tip = self.client._commit(heartbeat, (), f"heartbeat {heartbeat.id}")
            self.pushes.rider = RefUpdate(agent_ref(heartbeat.id), tip, self.st.heartbeat_tip)
        try:
            yield
        finally:
            self.pushes.kind, self.pushes.rider = "other", None
            rode = self.pushes.taken()
            if heartbeat is not None and rode is not None:
                self.st.heartbeat_tip, self.st.last_beat = rode, time.time()
                if self.st.last_renew == 0.0:  # a heartbeat asked for (a pause) is out
                    self.st.last_renew = self.st.last_beat
                self.metrics.beat(heartbeat)
                self.metrics.rode.inc()

    def _next_wait(self, snap: Snapshot) -> float:
        """Sleep until the nearest future deadline; past ones were handled (or are not ours).
        Turns to claim tasks others own are the waker's (a told claim cancels them)."""
        now = time.time()
        at, self.st.waiting_for = min(((d, why) for d, why in self._deadlines(snap, now)
                                       if d > now),
                                      default=(now + self.config.poll_seconds, "poll"))
        return max(0.01, at - now)

    def _deadlines(self, snap: Snapshot, now: float) -> list[tuple[float, str]]:
        """When something of ours comes due, and what it is (the reason a wait ends)."""
        _, beat = self._intervals(snap)
        settings = snap.settings
        beat_due = self._hosted_due(snap) if settings.hosted else self.st.last_renew + beat
        # The poll counts from the last read, not from now (and a due one is never dropped):
        # heartbeats that go out without a read (_beat_alone) must not push the reconciling
        # read away for ever, or a release nobody is told of is never seen.
        poll_at = max(self.st.last_read + self._poll_seconds(), now + 0.01)
        deadlines = [(poll_at, "poll"), (beat_due, "heartbeat")]
        deadlines += [(self._pause_end(p), "pause") for p in (self.st.pause, self.st.fleet) if p]
        deadlines += [(c.until, "cooled") for c in self.st.cooling.values()]
        if snap.terminal_keys():
            deadlines += [(fold_turn(snap, self.config.id, now), "fold"),
                          (self.st.fold_retry_at, "fold")]
        others = line(snap, self.config.id, now)
        for view in snap.claims.values():  # a backoff ends, a lease expires
            record = view.record
            if isinstance(record, Release) and self._near(snap, view.key, others):
                deadlines.append((record.not_before, "release"))
            elif isinstance(record, Claim) and (record.agent == self.config.id or self._near(
                    snap, view.key, others, lapsed=record.agent)):
                deadlines.append((record.expires_at + settings.skew_seconds, "lease"))
        if self.st.stopping:
            deadlines.append((now + 0.2, "stopping"))
        return deadlines

    def _near(self, snap: Snapshot, key: str, others: dict[str, Heartbeat],
              lapsed: str | None = None) -> bool:
        """Whether we stand among the first TOLD_PLACES in ``key``'s line (``lapsed``, the
        holder whose lease would have run out, out of it): only they wake when its release
        ends or its lease runs out. Every agent woke for every claim's expiry, and under
        load, where renewals lag, that was a read of the repo by every agent for each."""
        task = snap.tasks.get(key)
        if task is None or task.spec is None or not self._serves(task):
            return False
        return place(others, self.config.id, key, task.spec.specialty, lapsed) < TOLD_PLACES

    def _poll_seconds(self) -> float:
        """How long new work may go unread: the poll interval, or while the state host
        streams main's moves a safety net only (a poll costs that host an ssh channel and an
        upload-pack per agent)."""
        if self.waker.streaming:
            return max(self.config.poll_seconds, STREAMED_POLL)
        return self.config.poll_seconds

    def _told(self, arrivals: tuple[tuple[str, str], ...]) -> dict[str, float]:
        """Which of the arrived tasks the state host told of are ours to read, in how many
        seconds: at once those we own, a stagger per place for the next TOLD_PLACES - 1 in a
        line (unless the state host says it was claimed first), the rest at our next read
        (``math.inf``: our heartbeat reads for them, unless told of their claim first), never
        tasks we do not serve (the watch's thread)."""
        snap = self.last_snap
        if snap is None:
            return at_once(arrivals)
        now = time.time()
        others = line(snap, self.config.id, now)
        places = {key: place(others, self.config.id, key, specialty)
                  for key, specialty in arrivals if specialty in self.config.specialties}
        with self.told_lock:
            for key in places:
                self.told.setdefault(key, now)
        stagger = self._stagger()
        return {key: at * stagger if at < TOLD_PLACES else math.inf
                for key, at in places.items()}  # fmt: skip

    def _watch_report(self, what: str, detail: str) -> None:
        self.events.emit(what, detail=detail)

    # -- claiming -------------------------------------------------------------------------

    def _would_claim(self) -> bool:
        """Would new work on main be claimed now? (If not, main's moves need not wake us.)"""
        return (len(self.st.running) < self.config.max_tasks and not self.st.stopping
                and self.st.blocked is None and self._pause() is None)

    def _serves(self, task: TaskView) -> bool:
        return task.spec is not None and task.spec.specialty in self.config.specialties

    def _claim(self, snap: Snapshot, read_at: float) -> int:
        """Claim what is ours to try now, and tell the waker our later turns (``read_at``:
        when the read of ``snap`` began); only called when _would_claim (a slot is free)."""
        free = self.config.max_tasks - len(self.st.running)
        now = time.time()
        # A refusal is explained once someone wrote the task's ref (or the task left the queue).
        self.st.cooling = {k: c for k, c in self.st.cooling.items()
                           if k in snap.tasks and snap.claim_tip(k) == c.tip}
        candidates = [t for t in claimable(snap, self.config.specialties, self.st.running, now)
                      if t.key not in self.st.cooling or self.st.cooling[t.key].until <= now]
        with self.told_lock:
            self.told = {k: at for k, at in self.told.items() if at > now - LINE_WINDOW}
            told = self.told
        self.st.first_seen = {t.key: self.st.first_seen.get(t.key) or told.get(t.key, now)
                              for t in candidates}  # fmt: skip
        ordered = turns(snap, self.config.id, candidates, self.st.first_seen, now,
                        self._stagger())
        mine = due(ordered, now)
        self.waker.turns(later(ordered, now), read_at)
        claimed = 0
        for task in mine[:free]:
            pushed_at = time.monotonic()
            with self._pushing("claim", snap, {*self.st.running, task.key}):
                got = self.client.claim(snap, task, self._lease(snap, task))
            self.pace.saw_push(time.monotonic() - pushed_at)
            if isinstance(got, Result):
                self.events.emit("lost_on_last_attempt", task.key, reason=got.reason)
                claimed += 1  # a state change like a claim: re-read now, so the fold sees it
            elif got is None:
                self.metrics.rejected.inc()
                cool = self._cool(snap, task.key)
                self.events.emit("claim_rejected", task.key, retry_in=cool.delay)
                break  # the view is stale: re-read before trying again
            else:
                self._start(got)
                claimed += 1
        return claimed

    def _stagger(self) -> float:
        """How long a task owned by another agent waits per place in its line (pace.py): a
        poll interval more where the owner learns of new work only by polling."""
        polled = self.hosted or not self.waker.watching
        return self.pace.stagger(self.config.poll_seconds, polled=polled)

    def _cool(self, snap: Snapshot, key: str) -> Cooling:
        """Skip ``key`` for a while, longer each time its claim is refused on the same tip,
        so that one ref nobody can write does not keep this agent from other work."""
        tip = snap.claim_tip(key)
        last = self.st.cooling.get(key)
        delay = min(MAX_COOL, last.delay * 2) if last and last.tip == tip else FIRST_COOL
        entry = self.st.cooling[key] = Cooling(tip, time.time() + delay, delay)
        return entry

    def _start(self, held: Held) -> None:
        self.counters["claimed"] += 1
        self.metrics.claimed.inc()
        self.events.emit("claimed", held.key, attempt=held.claim.attempt,
                         takeover=held.claim.takeover_of is not None)
        cancel = threading.Event()
        future = self.pool.submit(self.runner.run, held, cancel)
        future.add_done_callback(lambda _: self.waker.poke())
        self.st.running[held.key] = Running(held, cancel, future)
        self.st.idle_since = None

    # -- publishing -----------------------------------------------------------------------

    def _collect(self, snap: Snapshot) -> None:
        for key, item in list(self.st.running.items()):
            if not item.future.done():
                continue
            if item.lost:
                del self.st.running[key]
                continue
            if item.report is None:
                try:
                    item.report = item.future.result()
                except Exception as exc:  # a runner bug must not kill the agent: a failure
                    item.report = AttemptReport("failed", f"runner crashed: {exc!r}")
            # Kept (and renewed) until the push goes through: a remote that is away for a
            # while delays the result but cannot lose it.
            self._publish(snap, item.held, item.report)
            del self.st.running[key]

    def _publish(self, snap: Snapshot, held: Held, report: AttemptReport) -> None:
        spec = held.task.spec
        assert spec is not None
        attempt = held.claim.attempt
        record: Result | Release
        settled = settle(report.status, attempt, spec.max_attempts)
        if isinstance(settled, Retry):
            # Uncounted (a limit, a refused credential, a shutdown): it waits as long as it
            # was asked to; counted: the repo's backoff between tries.
            delay = snap.settings.retry_backoff_seconds if settled.counted else report.retry_after
            delay = min(max(delay, 0.0), MAX_PAUSE)
            record = Release(task=held.key, agent=self.config.id, attempt=attempt,
                             status=settled.status, counted=settled.counted,
                             reason=report.reason, not_before=time.time() + delay,
                             ).carrying(report.outcome)
            if report.status == "paused" and report.cause == "credential":
                self._block(held, report)
            elif report.status == "paused":
                self._pause_own(held, report, delay)
        else:
            record = Result(task=held.key, status=settled, attempt=attempt,
                            agent=self.config.id, reason=report.reason).carrying(report.outcome)
        with self._pushing(record.KIND, snap, set(self.st.running) - {held.key}):
            published = self.client.finish(held, record)
        if published:
            kind = record.status if isinstance(record, Result) else "released"
            self.counters[kind] = self.counters.get(kind, 0) + 1
            self.metrics.published(record)
            self.events.emit("published", held.key, status=record.status,
                             kind=record.KIND, attempt=attempt)
        else:
            self.counters["fenced"] += 1
            self.metrics.fenced.inc()
            self.events.emit("result_fenced", held.key, status=record.status, attempt=attempt)

    # -- pauses: usage windows, refused credentials -------------------------------------

    def _pause_own(self, held: Held, report: AttemptReport, delay: float) -> None:
        """An attempt met a limit: stop claiming for ``delay`` and, when it was the model
        API's, publish the pause with the credential's fingerprint at once, so that every agent
        sharing the credential stops too."""
        now = time.time()
        spec = held.task.spec
        kind = spec.executor.kind if spec is not None else ""
        credential = self.credentials.get(kind) if report.cause == "model_limit" else None
        asked = report.retry_after
        reason = report.reason[:300]
        if asked > delay:
            reason = f"{reason[:200]} (asked {asked:.0f}s, capped at {MAX_PAUSE:.0f}s)"
        pause = Pause(now + delay, credential, self.config.id, reason)
        if self.st.pause is None or pause.until > self.st.pause.until:
            self.st.pause = pause
        self.metrics.pauses.inc()
        self.events.emit("paused", held.key, seconds=round(delay, 2), until=stamp(pause.until),
                         credential=credential, capped=asked > delay)
        self.st.last_renew = 0.0  # the heartbeat goes out in this iteration

    def _block(self, held: Held, report: AttemptReport) -> None:
        """The model API refused the credential: claim nothing more until restarted (the
        operator replaces the secret; deploy restarts the agent when it changes)."""
        if self.st.blocked is None:
            self.st.blocked = report.reason[:300] or "the model API refused the credential"
            self.events.emit("credential_refused", held.key, reason=self.st.blocked,
                             action="claiming stopped until the agent is restarted")
            self.st.last_renew = 0.0

    def _adopt_shared_pause(self, snap: Snapshot) -> None:
        """Pause while another agent's heartbeat says a credential of ours is waiting out a
        usage window; say when such a pause begins, grows and ends."""
        now = time.time()
        self.st.skew = snap.settings.skew_seconds
        old = self.st.fleet
        if old is not None and self._pause_end(old) <= now:
            self.st.fleet = old = None
            self.events.emit("fleet_resumed")
        mine = set(self.credentials.values())
        found = shared_pause(snap.agents.values(), self.config.id, mine, now, self.st.skew)
        if found is None or (old is not None and found.until <= old.until):
            return
        own = self.st.pause
        if own is not None and found.by == self.config.id and found.until <= own.until:
            return  # our own pause, echoed by the agents that adopted it
        self.st.fleet = found
        self.events.emit("fleet_paused", by=found.by, credential=found.credential,
                         until=stamp(found.until), seconds=round(found.until - now, 2),
                         reason=found.reason)
        self.st.last_renew = 0.0  # say so in our heartbeat too: status shows the paused fleet

    def _pause_end(self, pause: Pause) -> float:
        """When claiming may start again: an adopted pause gets the skew allowance (its time
        is another host's clock); an own one ends when the server said."""
        return pause.until + (self.st.skew if pause is self.st.fleet else 0.0)

    def _pause(self) -> Pause | None:
        """The pause in force now (own or adopted, the one ending later), or None."""
        now = time.time()
        live = [p for p in (self.st.pause, self.st.fleet)
                if p is not None and self._pause_end(p) > now]
        return max(live, key=self._pause_end) if live else None

    # -- leases, heartbeats ---------------------------------------------------------------

    def _heartbeat(self, snap: Snapshot, state: AgentState | None = None,
                   holding: set[str] | None = None, rides: bool = False) -> Heartbeat:
        _, beat = self._intervals(snap)
        now = time.time()
        pause = self._pause()
        if state is None:
            state = "draining" if self.st.stopping else "blocked" if self.st.blocked else (
                "paused" if pause is not None else "running")
        return Heartbeat(
            id=self.config.id, host=self.client.identity.host, pid=self.client.identity.pid,
            version=__version__, specialties=self.config.specialties,
            max_tasks=self.config.max_tasks,
            holding=tuple(sorted(self.st.running if holding is None else holding)),
            state=state,
            started_at=self.started_at, last_seen=now, heartbeat_seconds=beat,
            paused_until=pause.until if pause else None, metrics_port=self.config.metrics_port,
            sandbox=self.config.sandbox.mode,
            credentials=tuple(sorted(set(self.credentials.values()))),
            paused_for=pause.credential if pause else None,
            paused_by=pause.by if pause else None,
            reason=self.st.blocked or (pause.reason if pause else None),
            beats_hour=self._beats_hour(now, rides=rides),
        )

    def _renew_if_due(self, snap: Snapshot) -> None:
        _, beat = self._intervals(snap)
        if time.time() < self.st.last_renew + beat:
            return
        live = [r.held for r in self.st.running.values() if not r.lost]
        self._push_renewals(snap, live)

    def _hosted_due(self, snap: Snapshot) -> float:
        """Hosted profile: when the next renewal or heartbeat is due. Renewals when
        ``renew_fraction`` of a lease has passed; a heartbeat every ``idle_heartbeat_seconds``
        while nothing is held, and while busy only before the agent would seem offline (its
        claims and results carry one meanwhile)."""
        fraction = snap.settings.renew_fraction
        held = [r.held.claim for r in self.st.running.values() if not r.lost]
        renew = [c.renewed_at + fraction * c.lease_seconds for c in held]
        gap = self._intervals(snap)[1] * ((ONLINE_BEATS - 0.5) if held else 1.0)
        forced = 0.0 if self.st.last_renew == 0.0 else self.st.last_beat + gap
        return min([forced, *renew])

    def _renew_hosted(self, snap: Snapshot) -> None:
        now = time.time()
        if now < self._hosted_due(snap):
            return
        fraction = snap.settings.renew_fraction
        live = [r.held for r in self.st.running.values() if not r.lost]
        # Renew what is due, and with it what would be due within half a lease fraction.
        soon = now + fraction * 0.5 * max((h.claim.lease_seconds for h in live), default=0.0)
        due = [h for h in live if h.claim.renewed_at + fraction * h.claim.lease_seconds <= soon]
        if self._push_renewals(snap, due):
            self.st.last_beat = self.st.last_renew

    def _notice_lost(self, snap: Snapshot, read_at: float) -> None:
        """Hosted profile: renewals are rare, so a claim taken from us (a cancel, a takeover)
        is noticed from the snapshot instead, at no push: one we wrote before ``read_at``
        whose ref no longer holds our commit."""
        for key, item in self.st.running.items():
            if item.lost or item.held.claim.renewed_at >= read_at:
                continue
            if snap.claim_tip(key) != item.held.tip:
                self._lose(key, "its claim ref moved: taken over or cancelled")

    def _lose(self, key: str, reason: str) -> None:
        item = self.st.running[key]
        item.lost = True
        item.cancel.set()
        self.counters["lost"] += 1
        self.metrics.lost.inc()
        self.events.emit("claim_lost", key, reason=reason)

    def _push_renewals(self, snap: Snapshot, live: list[Held]) -> bool:
        """Renew ``live`` with the heartbeat in one push; did the remote take the heartbeat?"""
        heartbeat = self._heartbeat(snap)
        with self._pushing("renew" if live else "heartbeat"):
            renewed, lost, tip = self.client.renew(live, heartbeat, self.st.heartbeat_tip)
        took = tip is not None and tip != self.st.heartbeat_tip
        if took:  # the remote took the heartbeat
            self.metrics.beat(heartbeat)
        self.st.heartbeat_tip = tip
        self.st.last_renew = time.time()
        for key, held in renewed.items():
            self.st.running[key].held = held
        for key in lost:
            self._lose(key, "renewal refused: taken over or cancelled")
        return took

    # -- bad input, dependencies, folding -------------------------------------------------

    def _judge_bad_tasks(self, snap: Snapshot) -> None:
        now = time.time()
        for task in snap.tasks.values():
            if task.key in snap.claims or task.key in snap.folded:
                continue  # a replay is reported (_report_history), never judged twice
            status: Terminal
            if task.error is not None:
                status, reason = "invalid", task.error
            elif task.spec is not None:
                verdict = dependency_verdict(snap, task)
                if verdict is None or verdict == "wait":
                    continue
                status = "invalid" if verdict.startswith("depends_on") else "cancelled"
                reason = verdict
            else:
                continue
            if not elected(snap, self.config.id, task.key, task.added_at, now):
                continue
            result = Result(task=task.key, status=status,
                            attempt=0, agent=self.config.id, reason=reason)
            with self._pushing("judge", snap):
                written = self.client.write_terminal(snap, task.key, result, None)
            if written:
                self.counters["judged"] = self.counters.get("judged", 0) + 1
                self.events.emit("judged", task.key, status=status, reason=reason)

    def _report_history(self, snap: Snapshot) -> None:
        """Say once what main's history refuses: task files whose id already finished, and
        an archive that lost what folds put there. Work goes on either way. Both follow from
        main (and from which folded ids have a claim ref: a replay is one that has none), so
        they are looked at again only when those change, not on every wake-up."""
        seen = (snap.main, frozenset(k for k in snap.claims if k in snap.folded))
        if seen == self.st.history_seen:
            return
        self.st.history_seen = seen
        for key, reason in snap.replayed().items():
            if key not in self.st.replays_seen:
                self.st.replays_seen.add(key)
                self.events.emit("replay_refused", key, reason=reason)
        missing = snap.unarchived()
        if missing != self.st.unarchived_seen:
            self.st.unarchived_seen = missing
            if missing:
                self.events.emit("archive_rewritten", count=len(missing), ids=missing[:10],
                                 reason="archive/ on main lacks tasks that folds in its "
                                        "history archived; they are never run again")

    def _maybe_fold(self, snap: Snapshot, *, final: bool) -> None:
        finished = snap.terminal_keys()
        if not finished:
            return
        now = time.time()
        if self.st.fold_refused and self.st.fold_refused[0] not in finished:
            self.st.fold_refused, self.st.fold_retry_at = None, 0.0  # someone folded it
        turn = max(fold_turn(snap, self.config.id, now), self.st.fold_retry_at)
        if not (final or now >= turn):
            return
        settings = snap.settings
        with self._pushing("fold"):
            folded = self.client.fold(snap, settings.fold_batch)
        if folded:
            self.counters["folded"] += folded
            self.events.emit("folded", count=folded)
            self.st.fold_refused, self.st.fold_retry_at = None, 0.0
            return
        # Refused (main moved): the next reading decides again, not at once, and each
        # refusal in a row doubles the wait, up to FOLD_BACKOFF or the delay: once every
        # agent's turn has passed, all of them tried at every reading (a fold push each) for
        # as long as main kept moving.
        key, refusals = self.st.fold_refused or (min(finished), 0)
        self.st.fold_refused = (key, refusals + 1)
        delay = settings.fold_delay_seconds
        wait = min(delay * 2 ** refusals, max(delay, FOLD_BACKOFF))
        self.st.fold_retry_at = now + wait * random.uniform(0.5, 1.0)

    def _idle(self, snap: Snapshot) -> bool:
        """Nothing held and nothing this agent serves is left unfinished."""
        if self.st.running:
            return False
        now = time.time()
        for task in snap.tasks.values():
            if task.key in snap.archived or task.key in snap.folded:
                continue
            state = snap.state(task.key, now)
            if is_terminal(state):
                continue
            if self._serves(task) or task.error is not None:
                return False
        return True

