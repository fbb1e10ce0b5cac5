"""Git objects without a work tree: trees and commits built in Python, read through cat-file."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import GitError, RemoteUnavailable
from cluster.state.gitcmd import start_git

TREE_MODE = "40000"
BLOB_MODE = "100644"


@dataclass(frozen=True)
class Entry:
    mode: str
    sha: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


Tree = dict[str, Entry]


@dataclass(frozen=True)
class Commit:
    tree: str
    parents: tuple[str, ...]
    message: str
    committer_time: int


def parse_tree(raw: bytes) -> Tree:
    entries: Tree = {}
    pos = 0
    while pos < len(raw):
        space = raw.index(b" ", pos)
        nul = raw.index(b"\0", space)
        mode = raw[pos:space].decode()
        name = raw[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = Entry(mode, raw[nul + 1 : nul + 21].hex())
        pos = nul + 21
    return entries


def format_tree(entries: Tree) -> bytes:
    def order(name: str) -> bytes:
        raw = name.encode("utf-8", "surrogateescape")
        return raw + b"/" if entries[name].is_tree else raw

    out = bytearray()
    for name in sorted(entries, key=order):
        entry = entries[name]
        out += f"{entry.mode} ".encode() + name.encode("utf-8", "surrogateescape") + b"\0"
        out += bytes.fromhex(entry.sha)
    return bytes(out)


def parse_commit(raw: bytes) -> Commit:
    head, _, message = raw.partition(b"\n\n")
    tree = ""
    parents: list[str] = []
    when = 0
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode()
        elif key == b"parent":
            parents.append(value.decode())
        elif key == b"committer":
            when = int(value.rsplit(b" ", 2)[-2])
    return Commit(tree, tuple(parents), message.decode("utf-8", "replace"), when)


def format_commit(
    tree: str, parents: tuple[str, ...], ident: str, when: int, message: str
) -> bytes:
    lines = [f"tree {tree}", *(f"parent {p}" for p in parents)]
    lines += [f"author {ident} {when} +0000", f"committer {ident} {when} +0000"]
    return ("\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n").encode()


OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def read_loose(objects: Path, sha: str) -> tuple[str, bytes] | None:
    """The loose object ``sha`` of the object directory ``objects`` (its kind and body), None
    when it has none there or what is there is not that object (unreadable, or not hashing
    to ``sha``: then a reader that asks git decides). ``sha`` is a name read from objects
    (a commit's parent line): anything but an object id names no file here."""
    if not OBJECT_ID.fullmatch(sha):
        return None
    try:
        raw = zlib.decompress((objects / sha[:2] / sha[2:]).read_bytes())
    except (OSError, ValueError, zlib.error):
        return None
    if hashlib.sha1(raw, usedforsecurity=False).hexdigest() != sha:
        return None
    head, nul, body = raw.partition(b"\0")
    kind, _, size = head.partition(b" ")
    if not nul or not size.isdigit() or int(size) != len(body):
        return None
    return kind.decode("ascii", "replace"), body


def _raw(kind: str, body: bytes) -> bytes:
    return f"{kind} {len(body)}\0".encode() + body


def object_id(kind: str, body: bytes) -> str:
    """The id git gives the object ``kind`` with ``body``."""
    return hashlib.sha1(_raw(kind, body), usedforsecurity=False).hexdigest()


def write_loose(objects: Path, kind: str, body: bytes) -> str:
    """Store a loose object under the object directory ``objects``; its id. A temp file, then
    a rename: readers never see half of one."""
    raw = _raw(kind, body)
    sha = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
    target = objects / sha[:2] / sha[2:]
    if target.exists():
        return sha
    # mkdir without parents: a repo moved away (before or during this write) is never
    # re-created, which would fork the state; the write fails as the remote being away.
    try:
        target.parent.mkdir(exist_ok=True)
        temp = target.parent / f"tmp_obj_{os.getpid()}_{threading.get_ident()}"
        temp.write_bytes(zlib.compress(raw, 1))
        temp.chmod(0o444)
        temp.replace(target)
    except OSError as exc:  # the repo went away (or filled up) mid-write
        raise RemoteUnavailable(f"could not store object {sha} in {objects}: {exc}") from exc
    return sha


class ObjectStore:
    """Reads objects through one long-lived ``git cat-file --batch``; writes loose objects."""

    def __init__(self, git_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.git_dir = git_dir
        self.env = dict(env or {})  # on top of the sealed environment (cluster.state.gitcmd)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = start_git(["cat-file", "--batch"], git_dir=self.git_dir, env=self.env)
        return self._proc

    def read(self, sha: str) -> tuple[str, bytes]:
        with self._lock:
            proc = self._process()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(sha.encode() + b"\n")
                proc.stdin.flush()
                header = proc.stdout.readline().split()
            except (BrokenPipeError, OSError) as exc:
                self._reset()
                raise GitError(["cat-file", sha], -1, str(exc)) from exc
            if len(header) != 3:
                self._reset()  # a restart re-reads the alternates and packs
                raise GitError(["cat-file", sha], 128, f"object {sha} missing")
            size = int(header[2])
            body = proc.stdout.read(size + 1)[:size]
            return header[1].decode(), body

    def _reset(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.stdin is not None:
                self._proc.stdin.close()
            self._reset()

    def tree(self, sha: str) -> Tree:
        kind, body = self.read(sha)
        if kind != "tree":
            raise GitError(["cat-file", sha], 128, f"{sha} is a {kind}, not a tree")
        return parse_tree(body)

    def commit(self, sha: str) -> Commit:
        kind, body = self.read(sha)
        if kind != "commit":
            raise GitError(["cat-file", sha], 128, f"{sha} is a {kind}, not a commit")
        return parse_commit(body)

    def blob(self, sha: str) -> bytes:
        return self.read(sha)[1]

    def write(self, kind: str, body: bytes) -> str:
        """Store a loose object in the repository (see :func:`write_loose`)."""
        return write_loose(self.git_dir / "objects", kind, body)

    def write_blob(self, data: bytes) -> str:
        return self.write("blob", data)

    def write_tree(self, entries: Tree) -> str:
        return self.write("tree", format_tree(entries))

    def write_commit(
        self, tree: str, parents: tuple[str, ...], ident: str, when: int, message: str
    ) -> str:
        return self.write("commit", format_commit(tree, parents, ident, when, message))

    def single_file_tree(self, name: str, data: bytes) -> str:
        return self.write_tree({name: Entry(BLOB_MODE, self.write_blob(data))})


class TreeEditor:
    """Edits a tree by path and writes only the subtrees that changed."""

    def __init__(self, store: ObjectStore, root: str | None) -> None:
        self.store = store
        self.root = root
        self._changes: dict[str, str | None] = {}

    def put(self, path: str, blob_sha: str) -> None:
        self._changes[path] = blob_sha

    def remove(self, path: str) -> None:
        self._changes[path] = None

    def write(self) -> str:
        return self._write(self.root, self._changes)[0]

    def _write(self, sha: str | None, changes: dict[str, str | None]) -> tuple[str, bool]:
        """Return the new tree's id and whether it is empty (empty subtrees are dropped)."""
        entries = dict(self.store.tree(sha)) if sha else {}
        nested: dict[str, dict[str, str | None]] = {}
        for path, blob in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                nested.setdefault(head, {})[rest] = blob
            elif blob is None:
                entries.pop(head, None)
            else:
                entries[head] = Entry(BLOB_MODE, blob)
        for name, sub in nested.items():
            current = entries.get(name)
            child, empty = self._write(current.sha if current and current.is_tree else None, sub)
            if empty:
                entries.pop(name, None)
            else:
                entries[name] = Entry(TREE_MODE, child)
        return self.store.write_tree(entries), not entries


class QuarantineStore(ObjectStore):
    """A push's objects as its hook sees them, without a reader started for the push: the
    loose objects of the push's ``quarantine`` (where receive-pack's unpack-objects put them)
    read in process, every other object through ``shared``, a long-lived reader of the
    repository the quarantine borrows from. Only for a quarantine holding no pack (a push
    large enough to be kept as a pack is read through a reader of its own, as before)."""

    def __init__(self, git_dir: Path, quarantine: Path, shared: ObjectStore) -> None:
        super().__init__(git_dir)
        self.quarantine = quarantine
        self.shared = shared

    def read(self, sha: str) -> tuple[str, bytes]:
        return read_loose(self.quarantine, sha) or self.shared.read(sha)
