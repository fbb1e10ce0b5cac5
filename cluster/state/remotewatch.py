"""Main's moves on an ``ssh://`` state remote, as the state host says them (its watch command).

One long-lived ``ssh HOST claude-cluster-watch PATH`` per agent (cluster.state.refwatch runs at
the far end), over the same ssh as the agent's git (``GIT_SSH_COMMAND``, else ``ssh`` with the
agent's ``~/.ssh``: its key, known_hosts and, deployed, one multiplexed connection). Every line
is main's commit; a new one is a hint to read, like a local ref event (cluster.state.watch).
When the command is missing, refused or cut off, the agent polls as before and the stream is
tried again later: it only ever makes an agent learn of work sooner.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_COMMAND = "claude-cluster-watch"
FIRST_RETRY = 2.0
MAX_RETRY = 120.0
STEADY = 30.0  # a stream that lived this long starts its retries over from FIRST_RETRY
MAX_LINE = 200  # a commit id is 40 or 64; anything longer is not the watch talking
_LINE = re.compile(r"(-|[0-9a-f]{40}([0-9a-f]{24})?)")


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
    """Calls ``moved()`` for every move of main the state host reports, from its own thread;
    ``live`` while the stream runs; ``report(what, detail)`` when it starts and when it ends."""

    def __init__(self, argv: list[str], moved: Callable[[], None],
                 report: Callable[[str, str], None] = lambda what, detail: None,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.argv = argv
        self._moved = moved
        self._report = report
        self._env = dict(env) if env is not None else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.live = False

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="remote-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.live = False

    def _run(self) -> None:
        delay = FIRST_RETRY
        while not self._stop.is_set():
            started = time.monotonic()
            why = self._stream()
            self.live = False
            if self._stop.is_set():
                return
            steady = time.monotonic() - started > STEADY
            delay = FIRST_RETRY if steady else min(MAX_RETRY, delay * 2)
            self._report("watch_lost", f"{why}; polling, next try in {delay:.0f} s")
            self._moved()  # whatever moved while the stream was down is read now
            self._stop.wait(delay)

    def _stream(self) -> str:
        """Run the watch once; why it ended."""
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self._env, cwd="/",
                                    start_new_session=True)  # fmt: skip
        except OSError as exc:
            return f"cannot run {self.argv[0]}: {exc}"
        with self._lock:
            self._proc = proc
        errors: deque[bytes] = deque(maxlen=5)
        drain = threading.Thread(target=_tail, args=(proc, errors), daemon=True)
        drain.start()
        last: str | None = None
        assert proc.stdout is not None
        try:
            while not self._stop.is_set():
                raw = proc.stdout.readline(MAX_LINE)
                if not raw:
                    break
                line = raw.decode("ascii", "replace").strip()
                if not _LINE.fullmatch(line):
                    return f"the watch said {line[:60]!r}, not a commit"
                if line != last:
                    if last is None:
                        self.live = True
                        self._report("watch_live", " ".join(self.argv[-2:]))
                    last = line
                    self._moved()  # the first line too: main may have moved since our read
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
                self._proc = None
        said = b" ".join(errors).decode("utf-8", "replace").strip()
        return f"the watch ended (exit {code})" + (f": {said[-300:]}" if said else "")


def _tail(proc: subprocess.Popen[bytes], into: deque[bytes]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        into.append(line.strip()[:400])


def for_remote(url: str, command: str, moved: Callable[[], None],
               report: Callable[[str, str], None],
               env: Mapping[str, str] | None = None) -> RemoteWatch | None:  # fmt: skip
    """The watch of the ssh state remote ``url``, or None (not ssh, or ``command`` empty)."""
    repo = ssh_repo(url)
    if repo is None or not command.strip():
        return None
    full = {**os.environ, **(env or {})}
    return RemoteWatch(ssh_argv(repo, command, full), moved, report, full)
