"""What a push would add, searched for the agent's secrets and the usual token shapes.

The scan covers every commit the push sends (``lower..head``, each against each parent): the
lines a change adds, whole added files (binary too), path names and the raw commit objects
(messages, author lines). A finding names where, never what: the value stays out of reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import GitError
from cluster.secret import Secret
from cluster.state.gitcmd import run_git_bytes

SHAPES: dict[str, re.Pattern[bytes]] = {
    "Anthropic key": re.compile(rb"sk-ant-[A-Za-z0-9_-]{16,}"),
    "GitHub token": re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    "AWS access key": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"),
}
GITLINK = b"160000"
BATCH = 64  # blobs per cat-file: bounds what is held in memory at once
MIN_VALUE = 8  # shorter secret values would match by chance


@dataclass(frozen=True)
class Finding:
    where: str  # a path (secrets in it masked) or "commit <sha>"


def values_of(secrets: Iterable[Secret]) -> list[bytes]:
    return [s.reveal().encode() for s in secrets if len(s.reveal()) >= MIN_VALUE]


def has_secret(data: bytes, values: Sequence[bytes]) -> bool:
    """Whether ``data`` holds one of ``values`` or anything shaped like a token or key."""
    return any(v in data for v in values) or any(p.search(data) for p in SHAPES.values())


def added_lines(old: bytes, new: bytes) -> bytes:
    """The lines of ``new`` that ``old`` does not have, in order, newline-joined."""
    before = set(old.split(b"\n"))
    return b"\n".join(line for line in new.split(b"\n") if line not in before)


def masked(text: str, values: Sequence[bytes]) -> str:
    """``text`` with every secret value and token shape in it replaced by ``***``."""
    raw = text.encode("utf-8", "surrogateescape")
    for value in values:
        raw = raw.replace(value, b"***")
    for pattern in SHAPES.values():
        raw = pattern.sub(b"***", raw)
    return raw.decode("utf-8", "replace")


def scan_range(git_dir: Path, lower: str | None, head: str, secrets: Iterable[Secret],
               timeout: float | None = 300.0) -> Finding | None:
    """The first place in ``lower..head`` (everything to ``head`` without ``lower``) that
    holds a secret, or None."""
    values = values_of(secrets)
    revs = run_git_bytes(["rev-list", head, *([f"^{lower}"] if lower else [])],
                         git_dir=git_dir, timeout=timeout).split()
    changes: list[tuple[str, str | None, str]] = []  # (path, old blob, new blob)
    for rev in revs:
        commit = _objects(git_dir, [rev.decode()], timeout)[0]
        if has_secret(commit, values):
            return Finding(f"commit {rev.decode()[:12]}")
        changes += _changed(git_dir, rev.decode(), timeout)
    for start in range(0, len(changes), BATCH):
        chunk = changes[start : start + BATCH]
        blobs = [sha for _, old, new in chunk for sha in (old, new) if sha]
        content = dict(zip(blobs, _objects(git_dir, blobs, timeout), strict=True))
        for path, old, new in chunk:
            added = content[new] if old is None else added_lines(content[old], content[new])
            if has_secret(path.encode("utf-8", "surrogateescape"), values) or has_secret(
                added, values
            ):
                return Finding(masked(path, values))
    return None


def _changed(git_dir: Path, rev: str, timeout: float | None) -> list[tuple[str, str | None, str]]:
    """What ``rev`` adds or changes against each parent (the empty tree for a root)."""
    raw = run_git_bytes(["diff-tree", "-r", "-z", "-m", "--root", "--no-renames", "--no-abbrev",
                         "--no-commit-id", "--diff-filter=AMT", rev],
                        git_dir=git_dir, timeout=timeout)  # fmt: skip
    fields = raw.split(b"\0")
    out = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.lstrip(b":").split(b" ")
        if len(parts) < 5 or parts[1] == GITLINK:
            continue
        old = parts[2].decode()
        out.append((path.decode("utf-8", "surrogateescape"),
                    None if set(old) == {"0"} or parts[0] == GITLINK else old,
                    parts[3].decode()))  # fmt: skip
    return out


def _objects(git_dir: Path, shas: Sequence[str], timeout: float | None) -> list[bytes]:
    """The raw contents of ``shas``, in order, through one ``cat-file --batch``."""
    raw = run_git_bytes(["cat-file", "--batch"], git_dir=git_dir, timeout=timeout,
                        input_bytes="".join(f"{sha}\n" for sha in shas).encode())
    out, pos = [], 0
    for sha in shas:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].split(b" ")
        if len(header) != 3:
            raise GitError(["git", "cat-file", "--batch"], 128, f"no object {sha}")
        size = int(header[2])
        out.append(raw[end + 1 : end + 1 + size])
        pos = end + 1 + size + 1
    return out
