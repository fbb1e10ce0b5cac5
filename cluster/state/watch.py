"""Wake-ups: watchdog events on a local remote's refs, the state host's word on an ssh one
(cluster.state.remotewatch), a fallback interval for everything."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from watchdog.events import FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from cluster.state.remotewatch import Arrivals

# Only main brings new work. Claim refs change with every claim, renewal and result: waking
# every agent for each would cost O(agents x events); releases and expiries are timed instead.
_RELEVANT = ("/refs/heads/",)
# Git moves a ref (and packed-refs) by renaming its lock file over it, so a rename is the one
# event that matters. Asked of inotify alone: every create, write, close and removal of a lock
# and every write in the repo's top directory cost each watching agent's Python an event, and
# at 64 agents on one machine the watchers took more CPU than the agents' own reads.
_EVENTS: list[type[FileSystemEvent]] = [FileMovedEvent]
# What ended a wait: a poke (our own news), main's move, a told arrival's turn, a turn to
# claim a task another agent owns.
Wake = Literal["poked", "moved", "told", "turn"]


class Stream(Protocol):
    """A source of hints from elsewhere (cluster.state.remotewatch.Listener)."""

    @property
    def live(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def at_once(arrivals: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """Every told arrival ours to read now (a move that brought none too): the judgement of
    a waker that knows nothing of the tasks' lines."""
    return {key: 0.0 for key, _ in arrivals} or {"": 0.0}


class _Handler(FileSystemEventHandler):
    def __init__(self, waker: Waker) -> None:
        self._waker = waker

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self._waker.streaming:
            return  # the state host's word says more (cluster.state.remotewatch)
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if not path or path.endswith(".lock"):
                continue
            if path.endswith("packed-refs") or any(part in path for part in _RELEVANT):
                self._waker.moved()
                return


class Waker:
    """``wait`` returns early when the remote may have changed (if the caller wants to know)
    or when poked; events are only hints."""

    def __init__(self, local_repo: Path | None) -> None:
        self._ready = threading.Condition()
        self._moved = False  # main may have moved since the last wait
        self._poked = False
        self._repo = local_repo
        self._observer: Any = None  # watchdog's Observer is a platform-chosen class
        self.stream: Stream | None = None  # the state host's own word, over ssh
        self._told: dict[str, float] = {}  # told arrivals -> when they become ours to read
        # Tasks waiting in our line -> when our turn to claim each comes (the agent's last
        # read said so): a read then, unless the state host tells the task claimed first.
        self._turns: dict[str, float] = {}
        self._claimed: dict[str, float] = {}  # told claimed -> when (time.time())
        # Told arrivals we stand later in line for (not ours to read now) -> when told
        # (time.time()): until a read begun after that, or their claim told, they are unread.
        self._later: dict[str, float] = {}
        # Which told arrivals are ours to read, in how many seconds (the agent's place in
        # their lines: cluster.agent.loop; ``math.inf``: later, at our next read whatever
        # starts it); by default all, at once.
        self.judge: Callable[[tuple[tuple[str, str], ...]], dict[str, float]] = at_once

    def start(self) -> None:
        if self.stream is not None:
            self.stream.start()
        self._watch()

    def _watch(self) -> None:
        # Where the state host speaks too (a file:// remote), its word says more than a ref
        # event (which tasks a move brought, so that only the first in their lines read): the
        # ref events are taken only while its stream is down (cluster.state.remotewatch).
        if self._repo is None or self._observer is not None:
            return
        heads = self._repo / "refs" / "heads"
        if not heads.is_dir():
            return
        observer = Observer()
        handler = _Handler(self)
        # Not recursive over refs/: claim refs churn with every claim and renewal, and a
        # recursive watch there overflows the inotify queue under load.
        observer.schedule(handler, str(heads), recursive=False, event_filter=_EVENTS)
        observer.schedule(handler, str(self._repo), recursive=False, event_filter=_EVENTS)
        observer.daemon = True
        observer.start()
        self._observer = observer

    @property
    def watching(self) -> bool:
        """Whether main's moves reach us (else only the fallback interval does)."""
        return self._observer is not None or self.streaming

    @property
    def streaming(self) -> bool:
        """Whether the state host's stream of main's moves runs (cluster.state.remotewatch)."""
        return self.stream is not None and self.stream.live

    def restart(self) -> None:
        """After the remote went away and came back: watch the directory that is there now
        (a stream reconnects by itself)."""
        self._unwatch()
        self._watch()

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
        self._unwatch()

    def _unwatch(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def moved(self, arrivals: Arrivals = None) -> None:
        """Main may have moved (a ref event); ``arrivals``, when the state host told them, are
        the tasks the move only added: then :attr:`judge` says which are ours to read, and in
        how many seconds (none: others are first in all their lines)."""
        turns = {"": 0.0} if arrivals is None else self.judge(arrivals)
        if not turns:
            return
        now, told_at = time.monotonic(), time.time()
        with self._ready:
            for key, delay in turns.items():
                if delay <= 0:
                    self._moved = True
                elif math.isinf(delay):
                    self._later.setdefault(key, told_at)
                else:
                    self._told[key] = min(self._told.get(key, float("inf")), now + delay)
            self._ready.notify_all()

    def unread(self, told_before: float = math.inf) -> bool:
        """Whether a told arrival we stand later in line for, told before ``told_before``
        (``time.time()``), is still unread and unclaimed (so that the next heartbeat reads:
        the first in its line may all be busy)."""
        with self._ready:
            return any(at < told_before for at in self._later.values())

    def claimed(self, keys: tuple[str, ...]) -> None:
        """The state host says these tasks were claimed: a turn waiting to read them is over."""
        now = time.time()
        with self._ready:
            for key in keys:
                self._told.pop(key, None)
                self._turns.pop(key, None)
                self._later.pop(key, None)
                self._claimed[key] = now

    def turns(self, at: dict[str, float], read_at: float) -> None:
        """Our turns to claim tasks others own (``time.time()`` of each), from a read begun
        at ``read_at``; they replace the last read's. A turn is a read when it comes, unless
        the state host told the task claimed since that read began: a claim told earlier was
        in the read, and a task still waiting after it was released or its lease ran out."""
        offset = time.monotonic() - time.time()
        with self._ready:
            self._claimed = {k: t for k, t in self._claimed.items() if t >= read_at}
            self._later = {k: t for k, t in self._later.items() if t >= read_at}
            self._turns = {key: when + offset for key, when in at.items()
                           if key not in self._claimed}
            self._ready.notify_all()

    def poke(self) -> None:
        """Something of our own happened (a task ended, a stop was asked for)."""
        with self._ready:
            self._poked = True
            self._ready.notify_all()

    def wait(self, timeout: float, *, refs: bool = True) -> Wake | None:
        """Up to ``timeout`` seconds, until poked or, with ``refs``, until main may have
        moved or a turn came: an agent with no free slot gains nothing from reading new work,
        and under a task stream every wake-up of every busy agent was a read of the repo.
        Whatever ends the wait early, the caller reads the repo next, so every hint is spent;
        one arriving during that read ends the next wait. Returns what woke us, None at the
        timeout (after which an idle agent's heartbeat may go out with no read: the stream's
        hints end a wait early, cluster.agent.loop)."""
        end = time.monotonic() + max(0.0, timeout)
        with self._ready:
            while True:
                now = time.monotonic()
                told = min(self._told.values(), default=float("inf"))
                turn = min(self._turns.values(), default=float("inf"))
                woke = self._woken(refs, told <= now, turn <= now)
                if woke is not None or now >= end:
                    break
                self._ready.wait(min(end, told, turn) - now if refs else end - now)
            self._poked = self._moved = False
            if refs:  # the read that follows is the turns that came
                self._told = {k: at for k, at in self._told.items() if at > now}
                self._turns = {k: at for k, at in self._turns.items() if at > now}
            return woke

    def _woken(self, refs: bool, told: bool, turn: bool) -> Wake | None:
        if self._poked:
            return "poked"
        if not refs:
            return None
        return "moved" if self._moved else "told" if told else "turn" if turn else None
