"""An agent's long-lived session with its ``ssh://`` state host: reads and judged writes
without a fetch or a push each (the host's end: cluster.state.sessiond).

The session runs ``claude-cluster-session PATH`` over the agent's own ssh (as its watch
does: cluster.state.remotewatch), so it costs one channel of the connection the agent
already has. Objects received are checked against their names and written into the agent's
mirror before anything reads them. Whatever goes wrong (the command missing on the host, a
host of another protocol, a cut connection, a late or malformed answer, a request the host
declines) makes the call return None: the caller reads or writes through git as before, and
the session is tried again later. It can only make reads and writes cheaper, never decide
one differently: the host judges every write by the pre-receive rules, as a push is judged.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cluster.errors import GitError
from cluster.state.gitcmd import PushReport, RefUpdate
from cluster.state.gitobj import OBJECT_ID, ObjectStore, object_id
from cluster.state.objsync import MAX_KNOWN, Obj, TooMuch, objects_for
from cluster.state.remotewatch import FIRST_RETRY, MAX_RETRY, ssh_argv, ssh_repo
from cluster.state.wire import MAX_OBJECTS, PROTOCOL, WireError, encode, read_frame

if TYPE_CHECKING:
    from cluster.state.remote import StateRemote

DEFAULT_COMMAND = "claude-cluster-session"
TIMEOUT = 60.0  # a fold's judgement included


def session_argv(url: str, command: str, env: Mapping[str, str]) -> list[str] | None:
    """What runs the session of the ``ssh://`` state remote ``url``; None for any other URL
    or an empty ``command``."""
    repo = ssh_repo(url)
    if repo is None or not command.strip():
        return None
    return ssh_argv(repo, command, env)


def attach(remote: StateRemote, command: str) -> StateSession | None:
    """Give ``remote`` (an ``ssh://`` one) a session with its host run by ``command``; the
    session, or None when the remote has none (another URL, an empty command)."""
    env = {**os.environ, **(remote.env or {})}
    argv = session_argv(remote.url, command, env)
    if argv is not None:
        remote.session = StateSession(argv, remote.store, env)
    return remote.session


def _under(ref: str, prefixes: Sequence[str]) -> bool:
    return any(ref == p or ref.startswith(f"{p}/") for p in prefixes)


class _Deadline:
    """``read`` of a pipe that gives up at a deadline (WireError), for wire.read_frame."""

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline

    def read(self, size: int, /) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise WireError(f"no answer within {TIMEOUT:.0f} s")
            chunk = os.read(self.fd, min(size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


class StateSession:
    """One session for the mirror ``store``; every method returns None to mean "use git"."""

    def __init__(self, argv: list[str], store: ObjectStore,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.argv = argv
        self.store = store
        self.env = dict(env) if env is not None else None
        self.known: set[str] = set()  # the host holds these and all they reach
        self.tips: dict[str, str] = {}  # refs whose tips we hold whole: told to a new host
        self.have: set[str] = set()  # fetched through git since the host last heard
        self.lost = ""  # why the last session ended ("" while none did)
        self._proc: subprocess.Popen[bytes] | None = None
        self._errors: deque[bytes] = deque(maxlen=5)
        self._retry_at = 0.0
        self._delay = FIRST_RETRY
        self._lock = threading.Lock()

    def refs(self, prefixes: Sequence[str]) -> dict[str, str] | None:
        """The refs at or under ``prefixes``, their objects in the mirror; None: fetch."""
        with self._lock:
            got = self._call({"op": "refs", "prefixes": list(prefixes)})
            if got is None or not isinstance(got[0].get("refs"), dict):
                return None
            header, objects = got
            refs = header["refs"]
            if not all(isinstance(v, str) and OBJECT_ID.fullmatch(v)
                       and isinstance(k, str) and _under(k, prefixes) for k, v in refs.items()):
                self._failed("the host named refs or ids the protocol has not")
                return None
            if not self._store(objects):
                return None
            if header.get("complete") is not True:
                return None  # the caller fetches, then tells us (fetched)
            if len(self.known) > MAX_KNOWN:
                self.known = set(self.tips.values())
            self.known.update(refs.values())
            self._tips(prefixes, refs)
            return dict(refs)

    def fetched(self, refs: Mapping[str, str]) -> None:
        """The mirror holds ``refs`` whole (fetched through git): the host is told so with the
        next request, so that it does not send their objects again."""
        with self._lock:
            self.have.update(refs.values())
            self.tips.update(refs)

    def _tips(self, prefixes: Sequence[str], refs: Mapping[str, str]) -> None:
        """The tips under ``prefixes`` are now ``refs`` (a deleted claim's drops out)."""
        self.tips = {r: s for r, s in self.tips.items() if not _under(r, prefixes)}
        self.tips.update(refs)

    def write(self, updates: Sequence[RefUpdate], atomic: bool) -> PushReport | None:
        """``updates`` judged and CAS-written by the host; None: push them."""
        with self._lock:
            if not self._open():
                return None
            try:
                objects = objects_for(self.store, [u.new for u in updates if u.new],
                                      self.known, MAX_OBJECTS)
            except (TooMuch, GitError):  # too much at once, or an object git must find
                return None
            got = self._call({"op": "write", "atomic": atomic,
                              "updates": [[u.ref, u.new, u.old] for u in updates]}, objects)
            if got is None or "accepted" not in got[0]:
                return None
            accepted = frozenset(str(r) for r in got[0]["accepted"])
            rejected = frozenset(str(r) for r in got[0].get("rejected", ()))
            if accepted:
                self.known.update(sha for sha, _, _ in objects)
                self.known.update(u.new for u in updates if u.new and u.ref in accepted)
            return PushReport(accepted, rejected)

    def close(self) -> None:
        with self._lock:
            self._end("closed")

    # -- the process ----------------------------------------------------------------------

    def _open(self) -> bool:
        if self._proc is not None and self._proc.poll() is None:
            return True
        if self._proc is not None:
            self._end("the session ended")
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=self.env, cwd="/", start_new_session=True)
        except OSError as exc:
            self._failed(f"cannot run {self.argv[0]}: {exc}")
            return False
        threading.Thread(target=self._drain, args=(self._proc,), daemon=True).start()
        self.known = set()
        self.have = set(self.tips.values())
        hello = self._exchange({"op": "hello", "protocol": PROTOCOL})
        if hello is None or hello[0].get("protocol") != PROTOCOL:
            self._failed(f"the host does not speak protocol {PROTOCOL}")
            return False
        return True

    def _call(self, header: dict[str, Any], objects: Sequence[Obj] = ()) -> \
            tuple[dict[str, Any], list[Obj]] | None:
        if not self._open():
            return None
        got = self._exchange(header, objects)
        if got is not None and "declined" in got[0]:
            return None  # this request only: the session goes on
        return got

    def _exchange(self, header: dict[str, Any], objects: Sequence[Obj] = ()) -> \
            tuple[dict[str, Any], list[Obj]] | None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        if self.have:
            header = {**header, "have": sorted(self.have)[:MAX_OBJECTS]}
        try:
            proc.stdin.write(encode(header, objects))
            proc.stdin.flush()
            got = read_frame(_Deadline(proc.stdout.fileno(), time.monotonic() + TIMEOUT))
        except (OSError, WireError) as exc:
            self._failed(str(exc))
            return None
        if got is None:
            self._failed("the host ended the session")
            return None
        self.have = set()
        self._delay = FIRST_RETRY
        return got

    def _store(self, objects: list[Obj]) -> bool:
        """Write received objects into the mirror, each checked against its name first."""
        for sha, kind, body in objects:
            if object_id(kind, body) != sha:
                self._failed(f"the host sent {sha} with other content")
                return False
        for _, kind, body in objects:
            self.store.write(kind, body)
        self.known.update(sha for sha, _, _ in objects)
        return True

    def _failed(self, why: str) -> None:
        """End the session; the next is tried after a delay that doubles up to MAX_RETRY."""
        self._end(why)
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(MAX_RETRY, self._delay * 2)

    def _end(self, why: str) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stderr = b" ".join(self._errors).decode("utf-8", "replace").strip()
        self.lost = why + (f": {stderr[-300:]}" if stderr else "")
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a host gone mid-write: nothing to flush to
                    stream.close()
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._errors.append(line.strip()[:400])
