"""``claude-cluster-watch REPO``: on the state host, say main's commit now and whenever it moves.

Agents on ``ssh://`` run it over their ssh connection (cluster.state.remotewatch) instead of
learning of new work by polling: a poll costs the state host an ssh channel and an
upload-pack per agent every few seconds, and makes the claim latency the poll interval.

Each line out is main's full commit id (``-`` while there is none): at once, on every move,
and again every KEEPALIVE seconds, so that a watcher whose agent went away finds out on its
next write and exits. It also exits when its stdin closes (sshd closes it with the session).
Nothing but the standard library: it runs on the state host beside the hooks (one small
process per watching agent), as a console script or copied as a file. Refs are read from
their files, never through git: a loose ``refs/heads/main``, else ``packed-refs``.

Moves are noticed by inotify (git moves a ref by renaming its lock over it); where inotify
is not to be had (another kernel, ``fs.inotify.max_user_instances`` spent by a large fleet's
watchers) the ref files are looked at every POLL_SECONDS instead.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import struct
import sys
from pathlib import Path

MAIN = "refs/heads/main"
KEEPALIVE = 20.0
POLL_SECONDS = 0.25
NONE = "-"
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# inotify(7): a rename onto a name, a creation (a first main) and a removal (pack-refs drops
# the loose ref once packed-refs holds it).
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x80, 0x100, 0x200
_IN_CLOEXEC, _IN_NONBLOCK = 0o2000000, 0o4000


def read_main(repo: Path) -> str:
    """Main's commit id as the ref files say, or NONE."""
    try:
        value = (repo / MAIN).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        value = ""
    if _SHA.fullmatch(value):
        return value
    try:
        packed = (repo / "packed-refs").read_text(encoding="ascii", errors="replace")
    except OSError:
        return NONE
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == MAIN and _SHA.fullmatch(sha):
            return sha
    return NONE


def repo_dir(arg: str) -> Path | None:
    """The bare repo ``arg`` names (``~`` expanded, as git's ssh paths are), if it is one."""
    if not arg or arg.startswith("-"):
        return None
    path = Path(arg).expanduser()
    if not ((path / "HEAD").is_file() and (path / "refs").is_dir()):
        return None
    return path


def _inotify(repo: Path) -> int | None:
    """An inotify descriptor watching where main moves, or None when there is none to have."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    watched = 0
    for path, mask in ((repo / "refs" / "heads", _IN_MOVED_TO | _IN_CREATE | _IN_DELETE),
                       (repo, _IN_MOVED_TO)):  # fmt: skip
        if libc.inotify_add_watch(fd, os.fsencode(path), mask) >= 0:
            watched += 1
    if watched == 0:
        os.close(fd)
        return None
    return fd


def _drain(fd: int) -> None:
    """Read every pending event (their names do not matter: main is read again anyway)."""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            return
        # Walk the records so that a short read can never be mistaken for more to come.
        offset = 0
        while offset + 16 <= len(data):
            (length,) = struct.unpack_from("I", data, offset + 12)
            offset += 16 + length


def _say(line: str) -> bool:
    try:
        sys.stdout.write(f"{line}\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        return False
    return True


def watch(repo: Path, stdin: int | None = 0) -> int:
    """Stream main's moves until the reader goes away; 0 then."""
    fd = _inotify(repo)  # before the first read: a move between the two is not missed
    last = read_main(repo)
    if not _say(last):
        return 0
    watched = [fd] if fd is not None else []
    if stdin is not None:
        watched.append(stdin)
    waited = 0.0
    while True:
        timeout = KEEPALIVE if fd is not None else POLL_SECONDS
        ready, _, _ = select.select(watched, [], [], timeout)
        if stdin is not None and stdin in ready and not os.read(stdin, 4096):
            return 0  # the session closed
        if fd is not None and fd in ready:
            _drain(fd)
        now = read_main(repo)
        waited = 0.0 if ready else waited + timeout
        if now != last or waited >= KEEPALIVE:
            last, waited = now, 0.0
            if not _say(now):
                return 0


def script(python: str = "/usr/bin/python3") -> bytes:
    """This module as a file to put on a state host's PATH where the package is not installed
    (it needs nothing but the standard library; ``-S``: not even site's path)."""
    return f"#!{python} -S\n".encode() + Path(__file__).read_bytes()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    repo = repo_dir(args[0]) if len(args) == 1 else None
    if repo is None:
        print("usage: claude-cluster-watch REPO (a bare git repository)", file=sys.stderr)
        return 2
    try:
        return watch(repo)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
