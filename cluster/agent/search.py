"""Bounded tree walks for the tools, and the `search` tool's program, which runs as a child.

A regular expression runs in ``re``, which holds the GIL until it is done: a catastrophic
pattern in the agent's own process would freeze every thread (heartbeats, lease renewals,
signal handling). So the toolbox runs ``python -I -S -c <this file> ROOT TOP PATTERN GLOB``
under the attempt's deadline and jail, where a timeout can kill it. This file imports
nothing but the standard library; the toolbox also imports :class:`Walk` from it for
``list_files``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

SKIPPED_DIRS = frozenset({".git"})
MAX_VISITED = 200_000  # directory entries one walk looks at
MAX_DEPTH = 64  # directories below the walk's top
MAX_MATCHES = 200
MAX_LINE = 300
MAX_SEARCHED_FILE = 2_000_000
MEMORY_LIMIT = 1 << 30  # the search child's heap
BAD_PATTERN = 2  # the child's exit status for a pattern that does not compile


def source() -> str:
    """This file's text, for ``python -c``."""
    return Path(__file__).read_text(encoding="utf-8")


class Walk:
    """The regular files under ``top`` (absolute paths, in ``os.walk`` order, sorted by name).

    Symlinks, FIFOs, sockets and devices are never returned nor followed; ``.git`` is skipped.
    It stops after ``limit`` directory entries and does not go deeper than ``depth``:
    ``truncated`` then says so. Unreadable directories are skipped.
    """

    def __init__(
        self, top: str, glob: str = "", limit: int = MAX_VISITED, depth: int = MAX_DEPTH
    ) -> None:
        self.top, self.glob, self.limit, self.depth = top, glob, limit, depth
        self.visited = 0
        self.truncated = False

    def __iter__(self) -> Iterator[str]:
        stack = [(self.top, 0)]
        while stack and not self.truncated:
            directory, level = stack.pop()
            files, subdirs = self._read(directory)
            yield from files
            if subdirs and level >= self.depth:
                self.truncated = True
            stack += [(d, level + 1) for d in reversed(subdirs)]

    def _read(self, directory: str) -> tuple[list[str], list[str]]:
        files: list[str] = []
        subdirs: list[str] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    self.visited += 1
                    if self.visited > self.limit:
                        self.truncated = True
                        break
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name not in SKIPPED_DIRS:
                            subdirs.append(entry.path)
                    elif entry.is_file(follow_symlinks=False) and (
                        not self.glob or fnmatch(entry.name, self.glob)
                    ):
                        files.append(entry.path)
        except OSError:
            pass  # unreadable, vanished, or a path too long: skipped, like os.walk does
        return sorted(files), sorted(subdirs)


def read_regular(path: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``path`` when it is a regular file of at most ``limit``
    bytes, else None; never blocks on a FIFO or follows a symlink."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = os.read(fd, limit + 1)
        return None if len(data) > limit else data
    except OSError:
        return None
    finally:
        os.close(fd)


def search(root: str, top: str, pattern: str, glob: str) -> str:
    """``path:line: text`` for each matching line under ``top``, paths relative to ``root``."""
    import re

    regex = re.compile(pattern)
    matches: list[str] = []
    walk = Walk(top, glob)
    for path in walk if Path(top).is_dir() else [top]:
        data = read_regular(path, MAX_SEARCHED_FILE)
        if data is None or b"\x00" in data[:8192]:
            continue  # not a regular file, too big, or binary
        shown = os.path.relpath(path, root)
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                matches.append(f"{shown}:{number}: {line[:MAX_LINE]}")
                if len(matches) >= MAX_MATCHES:
                    return "\n".join([*matches, f"[stopped at {MAX_MATCHES} matches]"])
    if walk.truncated:
        matches.append(f"[stopped after {walk.visited} entries: narrow path or glob]")
    return "\n".join(matches) or "(no matches)"


def main(args: list[str]) -> int:
    root, top, pattern, glob = args
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        soft = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(hard, MEMORY_LIMIT)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass  # the jail's own limits still hold
    import re

    try:
        found = search(root, top, pattern, glob)
    except re.error as exc:
        sys.stderr.write(f"bad regular expression: {exc}\n")
        return BAD_PATTERN
    sys.stdout.buffer.write(found.encode("utf-8", errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
