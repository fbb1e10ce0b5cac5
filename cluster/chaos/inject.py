"""Runs a fault schedule against the agent hosts, one fault per host at a time, and records it.

Each fault runs in its own thread and always undoes itself (SIGCONT, route removed) before it
returns, so the run ends with every host whole. Faults prefer a host that holds a task at
that moment (a fault on an idle agent exercises little); a fault with no free host is skipped.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cluster.chaos import actions
from cluster.chaos.schedule import Fault
from cluster.errors import ClusterError
from cluster.testhosts.faults import restart_host

Holders = Callable[[], dict[str, list[str]]]  # agent id (= host name) -> task keys it holds
KILL_SETTLE = 8.0  # systemd's RestartSec plus the agent's start: the host is busy meanwhile
STOP_HOLD_WAIT = 30.0  # a SIGSTOP waits this long at most for its agent to hold a claim
STOP_RETRY_GAP = 1.0  # running time between two tries
JOIN_MARGIN = 240.0  # a reboot's worst case (stop timeout, boot, sshd) on a loaded machine


@dataclass
class FaultRecord:
    kind: str
    host: str
    at: float  # epoch seconds when the fault hit (the holder's death for kill and stop)
    seconds: float
    held: list[str]
    ended: float = 0.0
    detail: str = ""
    ok: bool = False


@dataclass
class Injector:
    hosts: Sequence[str]
    state_address: str
    holders: Holders
    seed: int = 0
    records: list[FaultRecord] = field(default_factory=list)
    skipped: list[Fault] = field(default_factory=list)
    _busy: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reading: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _abort: threading.Event = field(default_factory=threading.Event)

    def run(self, schedule: Sequence[Fault]) -> list[FaultRecord]:
        """Play the schedule from now; returns once every fault has ended (bounded)."""
        rng = random.Random(self.seed)
        start = time.monotonic()
        try:
            for fault in sorted(schedule, key=lambda f: f.at):
                if self._abort.wait(max(0.0, start + fault.at - time.monotonic())):
                    break
                self._launch(fault, rng)
        finally:
            longest = max((f.seconds for f in schedule), default=0.0)
            deadline = time.monotonic() + longest + JOIN_MARGIN
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            raise ClusterError(f"faults still running after their deadline: {stuck}")
        return self.records

    def abort(self) -> None:
        """Start no more faults and cut the running ones short (they still undo themselves)."""
        self._abort.set()

    def _launch(self, fault: Fault, rng: random.Random) -> None:
        held = self._safe_holders()
        with self._lock:
            free = [h for h in self.hosts if h not in self._busy]
            holding = [h for h in free if held.get(h)]
            if not free:
                self.skipped.append(fault)
                return
            host = rng.choice(holding or free)
            self._busy.add(host)
        record = FaultRecord(fault.kind, host, 0.0, fault.seconds, sorted(held.get(host, [])))
        self.records.append(record)
        thread = threading.Thread(target=self._play, args=(record,), name=f"{fault.kind}-{host}")
        self._threads.append(thread)
        thread.start()

    def _safe_holders(self) -> dict[str, list[str]]:
        with self._reading:  # one reader (a StateClient and its mirror) for every thread
            try:
                return self.holders()
            except ClusterError:
                return {}

    def _play(self, record: FaultRecord) -> None:
        try:
            record.detail = PLAYERS[record.kind](self, record)
            record.ok = True
        except Exception as exc:  # a failed fault is data, not a dead injector
            record.detail = f"failed: {exc}"
        finally:
            record.ended = time.time()
            with self._lock:
                self._busy.discard(record.host)

    def _kill(self, record: FaultRecord) -> str:
        record.at = time.time()
        detail = actions.kill_agent(record.host)
        self._abort.wait(KILL_SETTLE)
        return detail

    def _stop(self, record: FaultRecord) -> str:
        """Freeze the agent while it holds a claim, past its lease: the fleet takes the task
        over and the holder, resumed, must find itself fenced.

        Who holds what is read *after* the SIGSTOP, when the frozen agent can change nothing,
        so the record says what the pause really held (tasks of a second or two often ended
        between an earlier read and the signal). A pause that finds nothing held is undone at
        once and tried again, for up to STOP_HOLD_WAIT seconds; then it pauses whatever it
        caught, and says so."""
        deadline = time.monotonic() + STOP_HOLD_WAIT
        while True:
            pid = actions.agent_pid(record.host)
            if not pid:
                return "no agent process"
            record.at = time.time()
            actions.signal_pid(record.host, pid, "STOP")
            try:
                record.held = sorted(self._safe_holders().get(record.host, []))
                last = time.monotonic() >= deadline or self._abort.is_set()
                if record.held or last:
                    self._abort.wait(record.seconds)
            finally:
                actions.signal_pid(record.host, pid, "CONT")
            if record.held or last:
                return f"paused pid {pid}" + ("" if record.held else " (holding nothing)")
            self._abort.wait(STOP_RETRY_GAP)  # let it run and claim before the next try

    def _cut(self, record: FaultRecord) -> str:
        record.at = time.time()
        actions.cut(record.host, self.state_address)
        try:
            self._abort.wait(record.seconds)
        finally:
            actions.heal(record.host, self.state_address)
        return f"cut from {self.state_address}"

    def _restart(self, record: FaultRecord) -> str:
        record.at = time.time()
        restart_host(record.host)
        return "rebooted"


PLAYERS: dict[str, Callable[[Injector, FaultRecord], str]] = {
    "kill": Injector._kill, "stop": Injector._stop, "cut": Injector._cut,
    "restart": Injector._restart,
}  # fmt: skip
