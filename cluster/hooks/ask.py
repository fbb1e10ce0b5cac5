"""The installed pre-receive hook's first step: ask the repo's judge server, else judge here.

Imports nothing but the interpreter's own ``_socket`` and ``posix`` (and the release's
version), so that with a judge server running (cluster.hooks.judged) a push costs a small
interpreter's start. Not their wrappers ``socket`` and ``os``: those pull in enum, selectors,
collections.abc and posixpath, about 7 ms a push, more than the bare interpreter's start
(docs/hooks.md). Without a server, or with any doubt about its answer, the push is judged in
this process by the same code the server runs (cluster.hooks.receive.pre_receive).
"""

from __future__ import annotations

import _socket
import posix
import sys

from cluster import __version__

TYPE_CHECKING = False  # typing itself costs a push ~20 ms: mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Sequence

SOCKET_NAME = "cluster-judge.sock"  # in the repository: see cluster.hooks.judged
PROTOCOL = 1
TIMEOUT = 120.0


def encode(cwd: str, lines: list[str], environ: dict[str, str]) -> bytes:
    """A request: NUL-separated fields (no path, ref line or variable can hold a NUL):
    protocol, release, the hook's working directory, its input, then its ``GIT_*``
    variables as ``NAME=value``. (Not JSON: its decoder costs a push ~15 ms of imports.)"""
    fields = [str(PROTOCOL), __version__, cwd, "".join(lines),
              *(f"{k}={v}" for k, v in environ.items() if k.startswith("GIT_"))]
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def decode_reply(data: bytes) -> tuple[int, list[str]] | None:
    """``0`` or ``1``, a newline, then the lines to print; anything else: None."""
    head, _, rest = data.decode("utf-8", "replace").partition("\n")
    if head not in ("0", "1"):
        return None  # declined (another release, changed code), or not our server
    return int(head), rest.splitlines()


def environ() -> dict[str, str]:
    """The hook's environment, as ``os.environ`` decodes it."""
    def text(raw: bytes) -> str:
        return raw.decode("utf-8", "surrogateescape")

    return {text(k): text(v) for k, v in posix.environ.items()}


def ask(git_dir: str, lines: list[str],
        env: dict[str, str]) -> tuple[int, list[str]] | None:
    """The judge server's verdict on the push whose hook runs in ``env``, or None to judge
    it here (no socket, no server listening on it, or any other failure to ask)."""
    chunks = []
    try:
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        conn.settimeout(TIMEOUT)
        conn.connect(f"{git_dir}/{SOCKET_NAME}")
        conn.sendall(encode(posix.getcwd(), lines, env))
        conn.shutdown(_socket.SHUT_WR)
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    except OSError:  # _socket.timeout is one
        return None
    finally:
        conn.close()
    return decode_reply(b"".join(chunks))


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["pre-receive"]:
        return 2
    env = environ()
    git_dir = env.get("GIT_DIR", ".")
    lines = sys.stdin.readlines()
    verdict = ask(git_dir, lines, env)
    if verdict is None:
        from pathlib import Path

        from cluster.hooks.receive import pre_receive

        verdict = pre_receive(Path(git_dir).resolve(), lines)
    code, printed = verdict
    for line in printed:
        print(line, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
