"""The push scan: properties of the matching (Hypothesis) and scans of real commit ranges."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.agent.secretscan import (
    SHAPES,
    added_lines,
    has_secret,
    masked,
    scan_range,
    values_of,
)
from cluster.secret import Secret
from tests.helpers import git

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
KEY = "sk-ant-api03-scan-test-key-0123456789"
values = st.text(ALNUM + "-_.", min_size=8, max_size=60).map(str.encode)
junk = st.binary(max_size=200)
lines = st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=20)
shaped = st.one_of(
    st.text(ALNUM, min_size=36, max_size=40).map(lambda s: f"ghp_{s}"),
    st.text(ALNUM, min_size=36, max_size=40).map(lambda s: f"gho_{s}"),
    st.text(ALNUM + "_", min_size=82, max_size=82).map(lambda s: f"github_pat_{s}"),
    st.text(ALNUM + "-_", min_size=40, max_size=100).map(lambda s: f"sk-ant-api03-{s}"),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda s: f"AKIA{s}"),
    st.sampled_from(["RSA ", "EC ", "OPENSSH ", ""]).map(
        lambda k: f"-----BEGIN {k}PRIVATE KEY-----"),
).map(str.encode)


@settings(max_examples=200, deadline=None)
@given(value=values, before=junk, after=junk)
def test_a_held_value_is_found_anywhere_in_any_bytes(value: bytes, before: bytes,
                                                     after: bytes) -> None:  # fmt: skip
    assert has_secret(before + value + after, [value])


@settings(max_examples=200, deadline=None)
@given(token=shaped, before=junk, after=junk)
def test_token_shapes_are_found_after_any_separator(token: bytes, before: bytes,
                                                    after: bytes) -> None:  # fmt: skip
    assert has_secret(before + b" " + token + b"\n" + after, [])


@settings(max_examples=200, deadline=None)
@given(old=lines, new=lines)
def test_added_lines_are_exactly_the_new_lines_old_lacks(old: list[bytes],
                                                         new: list[bytes]) -> None:  # fmt: skip
    got = added_lines(b"\n".join(old), b"\n".join(new))
    expected = [line for line in (b"\n".join(new)).split(b"\n")
                if line not in set(b"\n".join(old).split(b"\n"))]  # fmt: skip
    assert got == b"\n".join(expected)


@settings(max_examples=200, deadline=None)
@given(old=lines, new=lines, value=values, at=st.integers(min_value=0, max_value=20))
def test_a_value_on_a_line_old_lacks_is_in_what_is_added(
    old: list[bytes], new: list[bytes], value: bytes, at: int
) -> None:
    line = b"token = " + value
    new = [*new[:at], line, *new[at:]]
    old = [o for o in old if o != line]
    assert has_secret(added_lines(b"\n".join(old), b"\n".join(new)), [value])


@settings(max_examples=200, deadline=None)
@given(value=values, token=shaped, parts=st.lists(st.text(ALNUM + "/._ -"), max_size=4))
def test_masked_names_hold_no_value_and_no_shape(value: bytes, token: bytes,
                                                 parts: list[str]) -> None:  # fmt: skip
    text = "/".join([*parts, value.decode(), " " + token.decode(), "x"])
    shown = masked(text, [value])
    assert value.decode() not in shown
    assert not any(p.search(shown.encode()) for p in SHAPES.values())


def test_short_or_empty_values_are_not_matched_by_chance() -> None:
    assert values_of([Secret(""), Secret("abc"), Secret(KEY)]) == [KEY.encode()]
    assert not has_secret(b"plain text, no key: abc", values_of([Secret("abc")]))
    assert not has_secret(b"sk-ant- is the prefix; ghp_ too; AKIA alone", [])


# -- scans of real commit ranges -----------------------------------------------------------


AUTHOR = ["-c", "user.name=t", "-c", "user.email=t@x"]  # for the commits these tests make


def commit(repo: Path, files: dict[str, bytes | None], message: str = "change") -> str:
    for name, data in files.items():
        path = repo / name
        if data is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    git(["add", "-A"], repo)
    git([*AUTHOR, "commit", "-q", "--allow-empty", "-m", message], repo)
    return git(["rev-parse", "HEAD"], repo).strip()


def scan(repo: Path, lower: str | None, head: str) -> str | None:
    found = scan_range(repo / ".git", lower, head, [Secret(KEY)])
    return found.where if found is not None else None


def test_what_the_range_adds_is_scanned_not_what_base_had(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo)
    base = commit(repo, {"old.txt": f"an old key {KEY}\n".encode(), "a.txt": b"a\n"})
    assert scan(repo, None, base) == "old.txt"  # a new branch from nothing: all of it
    clean = commit(repo, {"a.txt": b"a\nb\n", "old.txt": f"an old key {KEY}\nmore\n".encode()})
    assert scan(repo, base, clean) is None  # the key's line was there before
    binary = commit(repo, {"img.bin": b"\x89PNG\x00\x01" + KEY.encode() + b"\xff"})
    assert scan(repo, clean, binary) == "img.bin"
    assert scan(repo, binary, binary) is None


def test_intermediate_commits_messages_and_names_are_scanned(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo)
    base = commit(repo, {"a.txt": b"a\n"})
    commit(repo, {"leak.txt": f"{KEY}\n".encode()})
    gone = commit(repo, {"leak.txt": None})  # removed again: still in what is pushed
    assert scan(repo, base, gone) == "leak.txt"
    git(["reset", "-q", "--hard", base], repo)
    message = commit(repo, {"b.txt": b"b\n"}, f"use {KEY}")
    assert scan(repo, base, message) == f"commit {message[:12]}"
    git(["reset", "-q", "--hard", base], repo)
    ghp = "ghp_" + "Ab1" * 12
    named = commit(repo, {f"notes/{ghp}.txt": b"x\n"})
    assert scan(repo, base, named) == "notes/***.txt"


def test_a_merged_side_branch_is_scanned(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo)
    base = commit(repo, {"a.txt": b"a\n"})
    git(["checkout", "-q", "--orphan", "side"], repo)
    git(["rm", "-q", "-rf", "."], repo)
    commit(repo, {"side.txt": b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"})
    git(["checkout", "-q", "main"], repo)
    commit(repo, {"c.txt": b"c\n"})
    git([*AUTHOR, "merge", "-q", "--allow-unrelated-histories", "-m", "merge", "side"], repo)
    assert scan(repo, base, git(["rev-parse", "HEAD"], repo).strip()) == "side.txt"
