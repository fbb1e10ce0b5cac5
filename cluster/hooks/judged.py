"""The judge server: the pre-receive rules kept warm in one process beside the state repo.

A hook process pays for its interpreter and the rules' imports on every push (about 150 ms
on a 2-core machine, most of a claim's cost). ``claude-cluster state judge --repo PATH`` loads
them once and answers the installed hook over a unix socket in the repository
(:data:`SOCKET_NAME`); the hook then starts only a small client (cluster.hooks.ask).

The hook never depends on it. The client judges the push itself when there is no socket,
the connection is refused, the server is of another release or its code changed on disk
since it started, the answer is malformed or late (docs/hooks.md, "The judge server"). Only
processes of the server's own user may ask (the socket is 0600 and each peer's uid is checked).
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from cluster import __version__
from cluster.errors import ClusterError, ConfigError
from cluster.hooks.ask import PROTOCOL, SOCKET_NAME
from cluster.hooks.push import QUARANTINE
from cluster.hooks.receive import verdict
from cluster.state.gitobj import ObjectStore

MAX_REQUEST = 64 * 1024 * 1024  # a fold's push names a few thousand refs at most
READ_TIMEOUT = 30.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_path(git_dir: Path) -> Path:
    return git_dir / SOCKET_NAME


def _loaded_code() -> dict[str, int]:
    """The project's modules this process runs, with their files' modification times."""
    out = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "cluster" or name.startswith("cluster.")) and path:
            with contextlib.suppress(OSError):
                out[path] = Path(path).stat().st_mtime_ns
    return out


def _decline(why: str) -> bytes:
    return f"declined: {why}\n".encode()


class JudgeServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir.resolve()
        if not (self.git_dir / "objects").is_dir() or not (self.git_dir / "HEAD").exists():
            raise ConfigError(f"{git_dir}: not a bare git repository")
        # Everything a push to main needs, imported now rather than on the first such push.
        import cluster.hooks.mainref  # noqa: F401

        self.code = _loaded_code()
        # The repository's objects, read by one process for every judged write that has no
        # quarantine (cluster.state.judgedwrite): a push's hook brings its own.
        self.store = ObjectStore(self.git_dir)
        self.stale = threading.Event()
        self.answered = 0  # pushes judged here (a declined request is not counted)
        self._count = threading.Lock()
        path = socket_path(self.git_dir)
        _clear_dead(path)
        # Bound by its name relative to the repository: a long path still fits sun_path.
        old_umask = os.umask(0o177)
        cwd = Path.cwd()
        try:
            os.chdir(self.git_dir)
            super().__init__(SOCKET_NAME, JudgeHandler)
        finally:
            os.chdir(cwd)
            os.umask(old_umask)

    def changed(self) -> bool:
        """Has any of the code this server judges with changed on disk since it started?"""
        for path, mtime in self.code.items():
            try:
                if Path(path).stat().st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    def answer(self, request: bytes) -> bytes:
        """The reply to one request (cluster.hooks.ask.encode): ``0``/``1``, a newline and
        the lines to print, or a line the client takes as "judge it yourself"."""
        fields = request.decode("utf-8", "surrogateescape").split("\0")
        if len(fields) < 4 or fields[0] != str(PROTOCOL):
            return _decline("unknown protocol")
        protocol, version, cwd, text, *variables = fields
        del protocol
        if version != __version__:
            return _decline(f"this server runs release {__version__}")
        if self.changed():
            self.stale.set()
            return _decline("the rules changed on disk since this server started")
        env = dict(v.split("=", 1) for v in variables if "=" in v)
        git_dir = (Path(cwd) / env.get("GIT_DIR", ".")).resolve()
        if git_dir != self.git_dir:
            return _decline(f"this server judges {self.git_dir}, not {git_dir}")
        if any(not env.get(name, "/").startswith("/") for name in QUARANTINE):
            return _decline("relative object directories")
        try:
            code, printed = verdict(git_dir, text.splitlines(keepends=True),
                                    {**env, "GIT_DIR": str(git_dir)}, self.store)
        except ClusterError as exc:  # git failed here: the hook, in its own environment, decides
            return _decline(f"could not judge: {exc}")
        with self._count:
            self.answered += 1
        return "\n".join([str(code), *printed]).encode("utf-8", "surrogateescape")

    def serve(self) -> None:
        """Serve until :meth:`shutdown` (a signal) or until the code on disk changed."""
        watcher = threading.Thread(target=self._stop_when_stale, daemon=True)
        watcher.start()
        try:
            self.serve_forever(poll_interval=0.5)
        finally:
            self.server_close()
            self.store.close()
            with contextlib.suppress(OSError):
                socket_path(self.git_dir).unlink()

    def _stop_when_stale(self) -> None:
        self.stale.wait()
        self.shutdown()


class JudgeHandler(socketserver.BaseRequestHandler):
    server: JudgeServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        uid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               _PEERCRED.size))[1]
        if uid != os.geteuid():
            return  # closed without an answer: only our own user's hooks ask
        conn.settimeout(READ_TIMEOUT)
        try:
            request = _read_all(conn)
        except (OSError, ValueError):
            return
        reply = self.server.answer(request)
        with contextlib.suppress(OSError):
            conn.sendall(reply)


def _read_all(conn: socket.socket) -> bytes:
    chunks, size = [], 0
    while chunk := conn.recv(65536):
        size += len(chunk)
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _clear_dead(path: Path) -> None:
    """Remove a socket a killed server left; refuse to start beside a live one."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ConfigError(f"{path}: a judge server already serves this repository")


@contextlib.contextmanager
def serving(git_dir: Path) -> Iterator[JudgeServer]:
    """A judge server for ``git_dir`` in a thread, for as long as the block runs."""
    server = JudgeServer(git_dir)
    thread = threading.Thread(target=server.serve, daemon=True, name="judge")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)
