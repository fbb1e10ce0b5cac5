"""Main's moves on an ``ssh://`` (or ``file://``) state remote, as the state host says them
(its watch command).

One long-lived ``ssh HOST claude-cluster-watch PATH`` per agent process (cluster.state.refwatch
runs at the far end), over the same ssh as the agent's git (``GIT_SSH_COMMAND``, else ``ssh``
with the agent's ``~/.ssh``: its key, known_hosts and, deployed, one multiplexed connection).
A line is main's commit, a hint to read like a local ref event (cluster.state.watch), with the
tasks the move brought when nothing else it did can bring work (:data:`Arrivals`); or the
tasks just claimed (``claimed ID ...``), which ends the turns others waited for to read them.
When the command is missing, refused or cut off, the agent polls as before and the stream is
tried again later: it only ever makes an agent learn of work sooner. A ``file://`` remote's
host is this machine: the same watch runs here without ssh, so that the push path such a URL
stands for is heard of as an ssh one is (its told arrivals read by the first in their lines,
not by every free agent at every move).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from cluster.state import refwatch
from cluster.state.remote import local_files

DEFAULT_COMMAND = "claude-cluster-watch"
FIRST_RETRY = 2.0
MAX_RETRY = 120.0
STEADY = 30.0  # a stream that lived this long starts its retries over from FIRST_RETRY
# A commit id, then at most refwatch.MAX_TASKS "id:specialty"; anything longer is not the
# watch talking.
MAX_LINE = 32768
_LINE = re.compile(r"(-|[0-9a-f]{40}(?:[0-9a-f]{24})?)(?: new((?: [a-z0-9][a-z0-9_-]{0,63}"
                   r":[A-Za-z0-9][A-Za-z0-9_-]{0,63})*))?")
_CLAIMED = re.compile(r"claimed((?: [a-z0-9][a-z0-9_-]{0,63})+)")
# What a move brought: the tasks (id, specialty) when nothing else it did can bring work, None
# when it may have (or the watch cannot tell): then every free agent reads.
Arrivals = tuple[tuple[str, str], ...] | None


def parse(line: str) -> tuple[str, Arrivals] | None:
    """A watch line's commit and arrivals; None for anything the watch would not say."""
    match = _LINE.fullmatch(line)
    if match is None:
        return None
    if match.group(2) is None:
        return match.group(1), None
    pairs = (item.split(":") for item in match.group(2).split())
    return match.group(1), tuple((key, specialty) for key, specialty in pairs)


def parse_claimed(line: str) -> tuple[str, ...] | None:
    """The tasks a ``claimed`` line says were just claimed; None for any other line."""
    match = _CLAIMED.fullmatch(line)
    return tuple(match.group(1).split()) if match else None


class Hints(Protocol):
    """Who hears the stream (cluster.state.watch.Waker)."""

    def moved(self, arrivals: Arrivals = None) -> None: ...

    def claimed(self, keys: tuple[str, ...]) -> None: ...


@dataclass(frozen=True)
class SshRepo:
    """Where an ssh state URL points: what git's ssh transport would connect to."""

    host: str  # [user@]host
    port: int | None
    path: str


def ssh_repo(url: str) -> SshRepo | None:
    """The ssh destination of ``url`` (``ssh://[user@]host[:port]/path`` or scp-like
    ``[user@]host:path``), None for any other kind of URL."""
    if url.startswith(("ssh://", "git+ssh://", "ssh+git://")):
        parts = urlsplit(url)
        if not parts.hostname or not parts.path:
            return None
        host = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        path = unquote(parts.path)
        if path.startswith("/~"):
            path = path[1:]  # ssh://host/~user/repo is ~user/repo, as git reads it
        try:
            port = parts.port
        except ValueError:
            return None
        return SshRepo(host, port, path)
    if "://" in url or url.startswith("/"):
        return None
    host, colon, path = url.partition(":")
    if not colon or not host or not path or "/" in host:
        return None
    return SshRepo(host, None, path)


def ssh_argv(repo: SshRepo, command: str, env: Mapping[str, str]) -> list[str]:
    """The argv that runs ``command PATH`` on the state host as git's own ssh would connect
    (``GIT_SSH_COMMAND`` is a shell string, run by a shell as git runs it)."""
    remote = f"{command} {shlex.quote(repo.path)}"
    args = ["-T", *(["-p", str(repo.port)] if repo.port else []), "--", repo.host, remote]
    custom = env.get("GIT_SSH_COMMAND")
    if custom:
        return ["sh", "-c", f'{custom} "$@"', "ssh", *args]
    return [env.get("GIT_SSH") or "ssh", *args]


class RemoteWatch:
    """One stream of main's moves from the state host (``argv`` runs the watch), read by its
    own thread while anyone listens; its listeners' ``moved()`` is called at every move,
    ``report(what, detail)`` when it starts and when it ends. Agents that share a process
    share it (:func:`for_remote`): sshd allows 10 sessions per connection by default, and
    agents that share one multiplexed connection would each have held one."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        self.argv = argv
        self._env = dict(env) if env is not None else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[Listener] = []
        self.live = False

    def listen(self, hints: Hints,
               report: Callable[[str, str], None] = lambda what, detail: None) -> Listener:
        """A listener; the stream runs while a started one is listening."""
        return Listener(self, hints, report)

    def _join(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                return
            self._listeners.append(listener)
            if self._thread is None:
                # Its own event: a thread told to stop never sees a later start's.
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                                name="remote-watch", daemon=True)  # fmt: skip
                self._thread.start()
            elif self.live:  # joins a running stream: it has missed the first line
                listener.report("watch_live", self._what)
                listener.hints.moved(None)

    def _leave(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if self._listeners or self._thread is None:
                return
            self._stop.set()
            proc, thread, self._thread = self._proc, self._thread, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
        thread.join(timeout=10)
        self.live = False

    @property
    def _what(self) -> str:
        return " ".join(self.argv[-2:])  # the host and the remote command

    def _listening(self) -> list[Listener]:
        """The listeners now, to be told outside the lock (a listener may stop when told)."""
        with self._lock:
            return list(self._listeners)

    def _run(self, stop: threading.Event) -> None:
        delay = FIRST_RETRY
        while not stop.is_set():
            started = time.monotonic()
            why = self._stream(stop)
            if stop.is_set():
                return
            self.live = False
            steady = time.monotonic() - started > STEADY
            delay = FIRST_RETRY if steady else min(MAX_RETRY, delay * 2)
            lost = f"{why}; polling, next try in {delay:.0f} s"
            for listener in self._listening():
                listener.report("watch_lost", lost)
                listener.hints.moved(None)  # read what moved meanwhile
            stop.wait(delay)

    def _stream(self, stop: threading.Event) -> str:
        """Run the watch once; why it ended."""
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self._env, cwd="/",
                                    start_new_session=True)  # fmt: skip
        except OSError as exc:
            return f"cannot run {self.argv[0]}: {exc}"
        with self._lock:
            self._proc = proc
        if stop.is_set():  # told to stop while it started: _leave saw no process to end
            proc.terminate()
        errors: deque[bytes] = deque(maxlen=5)
        drain = threading.Thread(target=_tail, args=(proc, errors), daemon=True)
        drain.start()
        last: str | None = None
        assert proc.stdout is not None
        try:
            while not stop.is_set():
                raw = proc.stdout.readline(MAX_LINE)
                if not raw:
                    break
                line = raw.decode("ascii", "replace").strip()
                claimed = parse_claimed(line) if last is not None else None
                if claimed is not None:
                    for listener in self._listening():
                        listener.hints.claimed(claimed)
                    continue
                said = parse(line)
                if said is None:
                    return f"the watch said {line[:60]!r}, not a commit"
                sha, arrivals = said
                if sha != last:
                    if last is None:  # the first line too: main may have moved since our read
                        self.live, arrivals = True, None
                        for listener in self._listening():
                            listener.report("watch_live", self._what)
                    last = sha
                    for listener in self._listening():
                        listener.hints.moved(arrivals)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            drain.join(timeout=5)
            with self._lock:
                if self._proc is proc:
                    self._proc = None
        stderr = b" ".join(errors).decode("utf-8", "replace").strip()
        return f"the watch ended (exit {code})" + (f": {stderr[-300:]}" if stderr else "")


def _tail(proc: subprocess.Popen[bytes], into: deque[bytes]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        into.append(line.strip()[:400])


class Listener:
    """One agent's hold on a :class:`RemoteWatch` (what cluster.state.watch.Waker starts and
    stops)."""

    def __init__(self, watch: RemoteWatch, hints: Hints,
                 report: Callable[[str, str], None]) -> None:  # fmt: skip
        self.watch = watch
        self.hints = hints
        self.report = report

    @property
    def live(self) -> bool:
        return self.watch.live

    def start(self) -> None:
        self.watch._join(self)

    def stop(self) -> None:
        self.watch._leave(self)


_SHARED: dict[tuple[str, ...], RemoteWatch] = {}
_SHARED_LOCK = threading.Lock()


def watch_argv(url: str, command: str, env: Mapping[str, str]) -> list[str] | None:
    """What runs the watch of the state remote ``url``: ``command`` on an ssh one's host; for
    a ``file://`` one, whose host is this machine, the watch's own file here (standard library
    only, ``-I``: nothing from the environment or the working directory). None for any other
    URL (a plain path is watched in place: cluster.state.watch) or an empty ``command``."""
    if not command.strip():
        return None
    if url.startswith("file://"):
        files = local_files(url)
        return None if files is None else [
            sys.executable, "-I", refwatch.__file__, str(files)]
    repo = ssh_repo(url)
    return None if repo is None else ssh_argv(repo, command, env)


def for_remote(url: str, command: str, hints: Hints,
               report: Callable[[str, str], None],
               env: Mapping[str, str] | None = None) -> Listener | None:  # fmt: skip
    """A listener to the watch of the state remote ``url`` (:func:`watch_argv`), shared by
    every agent of this process that reaches it alike; None when it has none."""
    full = {**os.environ, **(env or {})}
    argv = watch_argv(url, command, full)
    if argv is None:
        return None
    with _SHARED_LOCK:
        watch = _SHARED.get(tuple(argv))
        if watch is None:
            watch = _SHARED[tuple(argv)] = RemoteWatch(argv, full)
    return watch.listen(hints, report)
