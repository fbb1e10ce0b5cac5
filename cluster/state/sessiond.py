"""``claude-cluster-session REPO``: on the state host, an agent's reads and judged writes over
one long-lived ssh session (cluster.state.session is the other end).

Over ``ssh://`` every read is a fetch and every write a push: about thirty processes a claim
between the two machines (docs/capacity.md). Here, one process per agent answers from the
repository's ref files and objects:

- ``refs``: the protocol's refs, read from their files, and the objects they reach that the
  agent lacks (cluster.state.objsync: what this session already sent or received is not sent
  again; a tree travels as what changed from its commit's parent). Beyond
  ``wire.MAX_OBJECTS`` the reply says so and the agent fetches through git.
- ``write``: ref updates and their new objects, judged exactly as a push is. Each object must
  hash to its name; together with the repository they must hold everything the new tips
  reach, each object of the kind what refers to it says (git's connectivity check); they are
  written to a quarantine under ``objects/`` as receive-pack's are, the pre-receive rules
  judge the updates through it (cluster.hooks.receive.verdict, the installed hook's code),
  and only then are the objects moved in and the refs compare-and-swapped (``update-ref``,
  git's own locks, as receive-pack does). A write the session cannot judge (a failure of git
  here, a request it does not take) is ``declined``: the agent pushes it, and the hook judges.

A malformed frame ends the session (nothing of it is used); the agent then reads and writes
through git until it opens a new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from cluster import __version__
from cluster.errors import ClusterError, GitError
from cluster.hooks.receive import verdict
from cluster.state.gitcmd import RefUpdate
from cluster.state.gitobj import OBJECT_ID, ObjectStore, object_id, write_loose
from cluster.state.judgedwrite import request_lines
from cluster.state.localrefs import read_refs, update_refs
from cluster.state.objsync import MAX_KNOWN, Obj, TooMuch, closure, objects_for
from cluster.state.refwatch import repo_dir
from cluster.state.remote import REF_PATTERNS
from cluster.state.wire import MAX_OBJECTS, PROTOCOL, WireError, encode, read_frame

# What a ref name in a write may be: printable ASCII without spaces (a space or a newline
# would make a second line of pre-receive's input); the rules then refuse any but the
# protocol's refs.
_REF = re.compile(r"refs/[!-~]{1,250}")


class SessionServer:
    """One agent's session with the repository at ``git_dir``."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir.resolve()
        self.store = ObjectStore(self.git_dir)
        self.known: set[str] = set()  # the agent holds these and all they reach
        self.told: dict[str, str] = {}  # the refs last read to it

    def close(self) -> None:
        self.store.close()

    def answer(self, header: dict[str, Any], objects: list[Obj]) -> bytes:
        """The reply frame to one request."""
        self._learn(header.get("have"))
        op = header.get("op")
        try:
            if op == "hello":
                return self._hello(header)
            if op == "refs":
                return self._refs(header)
            if op == "write":
                return self._write(header, objects)
        except (ClusterError, OSError) as exc:  # git failed, the repository went away
            return encode({"declined": f"could not answer: {exc}"})
        return encode({"declined": f"unknown request {str(op)[:40]!r}"})

    def _learn(self, have: object) -> None:
        """Tips the agent holds whole (its mirror's refs, what it fetched through git)."""
        if isinstance(have, list):
            self.known.update(h for h in have[:MAX_OBJECTS]
                              if isinstance(h, str) and OBJECT_ID.fullmatch(h))
        if len(self.known) > MAX_KNOWN:
            self.known = set(self.told.values())

    def _hello(self, header: dict[str, Any]) -> bytes:
        if header.get("protocol") != PROTOCOL:
            return encode({"declined": f"this host speaks protocol {PROTOCOL}"})
        return encode({"protocol": PROTOCOL, "release": __version__})

    def _refs(self, header: dict[str, Any]) -> bytes:
        prefixes = header.get("prefixes")
        if not (isinstance(prefixes, list) and prefixes
                and all(p in REF_PATTERNS for p in prefixes)):
            return encode({"declined": f"prefixes must be some of {', '.join(REF_PATTERNS)}"})
        refs = read_refs(self.git_dir, prefixes)
        self.told.update(refs)
        try:
            sent = objects_for(self.store, refs.values(), self.known, MAX_OBJECTS)
        except (TooMuch, GitError) as exc:
            return encode({"refs": refs, "complete": False, "why": str(exc)})
        self.known.update(sha for sha, _, _ in sent)
        return encode({"refs": refs, "complete": True}, sent)

    def _write(self, header: dict[str, Any], objects: list[Obj]) -> bytes:
        updates = _updates(header.get("updates"))
        if updates is None:
            return encode({"declined": "updates must be [ref, new, old] with object ids"})
        given: dict[str, tuple[str, bytes]] = {}
        for sha, kind, body in objects:
            if object_id(kind, body) != sha:
                return encode({"declined": f"object {sha} is not what its name says"})
            given[sha] = (kind, body)
        reached, gap = closure(given, [u.new for u in updates if u.new], self._held)
        if gap is not None:
            return encode({"declined": f"object {gap[0]} {gap[1]}"})
        objects_dir = self.git_dir / "objects"
        quarantine = Path(tempfile.mkdtemp(prefix="incoming-session-", dir=objects_dir))
        try:
            for sha in reached:
                write_loose(quarantine, *given[sha])
            code, printed = verdict(self.git_dir, request_lines(updates), {
                "GIT_DIR": str(self.git_dir), "GIT_QUARANTINE_PATH": str(quarantine),
                "GIT_OBJECT_DIRECTORY": str(quarantine),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects_dir)}, self.store)
            if code != 0:
                return encode({"accepted": [], "rejected": [u.ref for u in updates],
                               "printed": printed})
            _migrate(quarantine, objects_dir, reached)
        finally:
            shutil.rmtree(quarantine, ignore_errors=True)
        report = update_refs(self.git_dir, updates, atomic=header.get("atomic") is True)
        self.known.update(reached)
        return encode({"accepted": sorted(report.accepted), "rejected": sorted(report.rejected),
                       "printed": printed})

    def _held(self, sha: str) -> str | None:
        try:
            return self.store.read(sha)[0]
        except GitError:
            return None


def _updates(raw: object) -> list[RefUpdate] | None:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_OBJECTS:
        return None
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and _REF.fullmatch(item[0])
                and all(v is None or (isinstance(v, str) and OBJECT_ID.fullmatch(v))
                        for v in item[1:])):
            return None
        out.append(RefUpdate(item[0], item[1], item[2]))
    if len({u.ref for u in out}) != len(out):
        return None
    return out


def _migrate(quarantine: Path, objects_dir: Path, shas: set[str]) -> None:
    """Move accepted objects in, as receive-pack does after its hooks: each a link (an object
    already there is the same object)."""
    for sha in shas:
        target = objects_dir / sha[:2] / sha[2:]
        target.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(quarantine / sha[:2] / sha[2:], target)


def serve(git_dir: Path, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Answer requests until the agent closes the session (0) or sends what is no frame (1)."""
    server = SessionServer(git_dir)
    try:
        while True:
            try:
                frame = read_frame(stdin)
            except WireError as exc:
                print(f"claude-cluster-session: {exc}", file=sys.stderr)
                return 1
            if frame is None:
                return 0
            stdout.write(server.answer(*frame))
            stdout.flush()
    except BrokenPipeError:
        return 0
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    repo = repo_dir(args[0]) if len(args) == 1 else None
    if repo is None or not (repo / "objects").is_dir():
        print("usage: claude-cluster-session REPO (a bare git repository)", file=sys.stderr)
        return 2
    try:
        return serve(repo, sys.stdin.buffer, sys.stdout.buffer)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
