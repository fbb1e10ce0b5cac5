"""Inside a jail: serve 127.0.0.1:PORT by relaying each connection to the broker's unix
socket, run the command, and exit with its status.

Run as ``python -I -S -c <this file> PORT SOCKET -- COMMAND...`` by the jail itself, so it
imports nothing but the standard library. It listens before it starts the command: the
command never races the bridge.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path

CHUNK = 65536


def source() -> str:
    """This file's text, for ``python -c`` inside a jail."""
    return Path(__file__).read_text(encoding="utf-8")


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            conn.close()
            upstream.close()
            continue
        for pair in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_relay, args=pair, daemon=True).start()


def main(args: list[str]) -> int:
    port, path, separator, *argv = args
    if separator != "--" or not argv:
        print("usage: bridge PORT SOCKET -- COMMAND...", file=sys.stderr)
        return 2
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(64)
    child = os.fork()
    if child == 0:
        listener.close()
        try:
            os.execvp(argv[0], argv)  # noqa: S606 - the jail's command, as given
        except OSError as exc:
            print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: os.kill(child, number))
    threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
