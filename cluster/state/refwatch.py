"""``claude-cluster-watch REPO``: on the state host, say main's commit now and whenever it moves.

Agents on ``ssh://`` run it over their ssh connection (cluster.state.remotewatch) instead of
learning of new work by polling: a poll costs the state host an ssh channel and an
upload-pack per agent every few seconds, and makes the claim latency the poll interval.

Each line out starts with main's full commit id (``-`` while there is none): at once, on every
move, and again every KEEPALIVE seconds, so that a watcher whose agent went away finds out on
its next write and exits. It also exits when its stdin closes (sshd closes it with the
session). A move that can bring no work but the task files it added under ``tasks/`` (it may
also fold, prune or withdraw tasks) is told with what it added, ``SHA new ID:SPECIALTY ...``
(nothing after ``new`` for a fold), so that only the agents first in those tasks' lines need
read the repo (cluster.agent.choose); any other move (a changed task, the settings, another
path) is the commit alone, which every free agent reads. The tasks are
read from git's objects by one ``git cat-file --batch`` per watcher; when that cannot be had,
every move is the commit alone. A claim ref that appears is told as ``claimed ID ...``
(:class:`Claims`), so that the agents next in a told task's line need not read it once its
owner has taken it.
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
import subprocess
import sys
from pathlib import Path

# cluster.state.ids.MAIN, spelled out: this file runs alone on a state host (stdlib only).
MAIN = "refs/heads/main"
KEEPALIVE = 20.0
POLL_SECONDS = 0.25
NONE = "-"
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# inotify(7): a rename onto a name, a creation (a first main) and a removal (pack-refs drops
# the loose ref once packed-refs holds it).
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x80, 0x100, 0x200
_IN_CLOEXEC, _IN_NONBLOCK = 0o2000000, 0o4000


MAX_TASKS = 200  # a larger landing is told as the commit alone: everyone reads it anyway
MAX_BLOB = 65536
_TASK_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TASK_FILE = re.compile(rf"({_TASK_KEY.pattern})\.yaml")
_SPECIALTY_LINE = re.compile(rb"specialty:[ \t]*(\S*?)[ \t]*(#.*)?")
_SPECIALTY = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_BLOB_MODES = (b"100644", b"100755")


class Objects:
    """Git's objects of ``repo`` through one ``git cat-file --batch`` (started on first use)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._proc: subprocess.Popen[bytes] | None = None
        self._trees: dict[str, dict[bytes, tuple[bytes, str]]] = {}

    def read(self, sha: str) -> tuple[str, bytes] | None:
        """``(type, content)`` of the object ``sha``, None when git cannot say."""
        try:
            if self._proc is None:
                self._proc = subprocess.Popen(
                    ["git", "--git-dir", str(self.repo), "cat-file", "--batch"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    cwd="/")  # fmt: skip
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(f"{sha}\n".encode())
            self._proc.stdin.flush()
            header = self._proc.stdout.readline().split()
            if len(header) != 3:
                return None  # "<sha> missing"
            size = int(header[2])
            content = self._proc.stdout.read(size + 1)[:size]
            return header[1].decode(), content
        except (OSError, ValueError):
            self.close()
            return None

    def tree(self, sha: str) -> dict[bytes, tuple[bytes, str]] | None:
        """A tree's entries, name -> (mode, object id); the last few are kept."""
        if sha in self._trees:
            return self._trees[sha]
        got = self.read(sha)
        if got is None or got[0] != "tree":
            return None
        entries: dict[bytes, tuple[bytes, str]] = {}
        data, width, at = got[1], len(sha) // 2, 0
        while at < len(data):
            space = data.index(b" ", at)
            nul = data.index(b"\0", space)
            entries[data[space + 1 : nul]] = (data[at:space], data[nul + 1 : nul + 1 + width].hex())
            at = nul + 1 + width
        if len(self._trees) >= 8:
            self._trees.pop(next(iter(self._trees)))
        self._trees[sha] = entries
        return entries

    def root(self, commit: str) -> dict[bytes, tuple[bytes, str]] | None:
        got = self.read(commit)
        if got is None or got[0] != "commit" or not got[1].startswith(b"tree "):
            return None
        return self.tree(got[1][5 : got[1].index(b"\n")].decode())

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def added_tasks(objects: Objects, old: str, new: str) -> list[tuple[str, str]] | None:
    """The tasks (id, specialty) that the move of main from ``old`` to ``new`` added, when
    nothing else it did can bring work: besides them it may only have changed ``archive/``
    (a fold, a prune) and removed task files (folded or withdrawn). None when it did anything
    else (a changed task, the settings, any other path), or when that cannot be told for sure.
    A fold brings no work: the results it archives were on their claim refs already."""
    before, after = objects.root(old), objects.root(new)
    if before is None or after is None:
        return None
    if any(before.get(name) != after.get(name) for name in before.keys() | after.keys()
           if name not in (b"tasks", b"archive")):  # fmt: skip
        return None
    was, now = before.get(b"tasks"), after.get(b"tasks")
    if was == now:
        return []
    if now is None:
        return []  # every task file went
    listed_before = objects.tree(was[1]) if was is not None else {}
    listed = objects.tree(now[1])
    if listed is None or listed_before is None:
        return None
    if any(name in listed and listed[name] != entry for name, entry in listed_before.items()):
        return None  # a task file changed: not an arrival
    added = [(name, entry) for name, entry in listed.items() if name not in listed_before]
    if len(added) > MAX_TASKS:
        return None
    out = []
    for name, (mode, sha) in sorted(added):
        match = _TASK_FILE.fullmatch(name.decode("ascii", "replace"))
        specialty = _specialty(objects, sha) if mode in _BLOB_MODES else None
        if match is None or specialty is None:
            return None
        out.append((match.group(1), specialty))
    return out


def _specialty(objects: Objects, sha: str) -> str | None:
    """The one top-level ``specialty:`` of a task file, if it plainly has one."""
    got = objects.read(sha)
    if got is None or got[0] != "blob" or len(got[1]) > MAX_BLOB:
        return None
    found = [m for line in got[1].splitlines() if (m := _SPECIALTY_LINE.fullmatch(line))]
    if len(found) != 1:
        return None
    value = found[0].group(1).strip(b"'\"")
    return value.decode() if _SPECIALTY.fullmatch(value) else None


def describe(objects: Objects | None, old: str, new: str) -> str:
    """The line for main's move from ``old`` to ``new``."""
    if objects is None or old == NONE or new == NONE:
        return new
    tasks = added_tasks(objects, old, new)
    if tasks is None:
        return new
    return " ".join([new, "new", *(f"{key}:{specialty}" for key, specialty in tasks)])


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


class Inotify:
    """inotify(7) through libc, or nothing (``fd`` None) where it is not to be had."""

    def __init__(self) -> None:
        self.fd: int | None = None
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            fd = int(self._libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK))
        except (OSError, AttributeError):
            return
        self.fd = fd if fd >= 0 else None

    def add(self, path: Path, mask: int) -> int | None:
        """Watch ``path`` for ``mask``; its watch descriptor, None when it cannot be watched."""
        if self.fd is None:
            return None
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        return wd if wd >= 0 else None

    def events(self) -> list[tuple[int, int, str]]:
        """Every pending event as (watch descriptor, mask, name)."""
        out: list[tuple[int, int, str]] = []
        while self.fd is not None:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            offset = 0
            while offset + 16 <= len(data):
                wd, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0")
                out.append((wd, mask, name.decode("utf-8", "replace")))
                offset += 16 + length
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Claims:
    """The claim refs that appear (a task claimed), told so that the agents waiting for their
    turn at a told arrival need not read it once its owner took it. Renewals and results
    rewrite a ref already known and say nothing; a fold's deletions are forgotten. Only with
    inotify: without it (or before ``refs/claims`` exists and is watched) nothing is told,
    and the waiting agents read at their turn."""

    def __init__(self, repo: Path, notify: Inotify) -> None:
        self.dir = repo / "refs" / "claims"
        self._notify = notify
        self._refs_wd = notify.add(repo / "refs", _IN_CREATE | _IN_MOVED_TO)
        self._wd: int | None = None
        self.known: set[str] = set()
        self._watch()
        try:
            packed = (repo / "packed-refs").read_text(encoding="utf-8", errors="replace")
        except OSError:
            packed = ""
        prefix = "refs/claims/"
        self.known |= {name[len(prefix):] for line in packed.splitlines()
                       for name in line.split(" ")[1:2] if name.startswith(prefix)}  # fmt: skip

    def _watch(self) -> set[str]:
        """Watch the claims directory once it exists; the names in it then."""
        if self._wd is None:
            self._wd = self._notify.add(self.dir, _IN_MOVED_TO | _IN_DELETE)
            if self._wd is not None:
                try:
                    found = {p.name for p in self.dir.iterdir() if not p.name.endswith(".lock")}
                except OSError:
                    found = set()
                new, self.known = found - self.known, self.known | found
                return new
        return set()

    def seen(self, events: list[tuple[int, int, str]]) -> list[str]:
        """The claims that ``events`` show appearing, in order."""
        out: list[str] = []
        for wd, mask, name in events:
            if wd == self._refs_wd and name == "claims":
                out += sorted(self._watch())
            elif wd != self._wd or self._wd is None or name.endswith(".lock"):
                continue
            elif mask & _IN_DELETE:
                self.known.discard(name)
            elif name not in self.known and _TASK_KEY.fullmatch(name):
                self.known.add(name)
                out.append(name)
        return out


def _say(line: str) -> bool:
    try:
        sys.stdout.write(f"{line}\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        return False
    return True


def watch(repo: Path, stdin: int | None = 0) -> int:
    """Stream main's moves until the reader goes away; 0 then."""
    notify = Inotify()  # before the first read: a move between the two is not missed
    heads = notify.add(repo / "refs" / "heads", _IN_MOVED_TO | _IN_CREATE | _IN_DELETE)
    top = notify.add(repo, _IN_MOVED_TO)
    if heads is None and top is None:
        notify.close()  # main's moves cannot be watched: look at the files instead
    claims = Claims(repo, notify)
    objects = Objects(repo)
    try:
        return _stream(repo, notify, claims, objects, stdin)
    finally:
        objects.close()
        notify.close()


def _stream(repo: Path, notify: Inotify, claims: Claims, objects: Objects,
            stdin: int | None) -> int:  # fmt: skip
    last = read_main(repo)
    if not _say(last):
        return 0
    fd = notify.fd
    watched = [fd] if fd is not None else []
    if stdin is not None:
        watched.append(stdin)
    waited = 0.0
    while True:
        timeout = KEEPALIVE if fd is not None else POLL_SECONDS
        ready, _, _ = select.select(watched, [], [], timeout)
        if stdin is not None and stdin in ready and not os.read(stdin, 4096):
            return 0  # the session closed
        lines = []
        if fd is not None and fd in ready:
            taken = claims.seen(notify.events())
            for at in range(0, len(taken), MAX_TASKS):
                lines.append(" ".join(["claimed", *taken[at : at + MAX_TASKS]]))
        now = read_main(repo)
        waited = 0.0 if ready else waited + timeout
        if now != last or waited >= KEEPALIVE:
            lines.insert(0, describe(objects, last, now) if now != last else now)
            last, waited = now, 0.0
        for line in lines:
            if not _say(line):
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
