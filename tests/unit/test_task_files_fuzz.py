"""Property: every task file, valid or broken or raw bytes, gets exactly one judgement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cluster.errors import ValidationError
from cluster.hooks.rules import task_problems
from cluster.state.ids import key_for_name
from cluster.state.init import init_state_repo
from cluster.state.schema import DEFAULT_SPECIALTIES, TaskSpec, parse_task
from tests.clients import state_client
from tests.helpers import commit_files

FIELDS = ("id", "title", "specialty", "priority", "repo", "base", "issue", "prompt", "executor",
          "verify", "timeout", "max_attempts", "budget", "depends_on", "labels")
HUGE = st.integers(4301, 6000).map(lambda n: "9" * n)
ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": draw(ids), "title": draw(st.text(min_size=1, max_size=40).filter(str.strip)),
        "specialty": draw(st.sampled_from(DEFAULT_SPECIALTIES)), "repo": "acme/web",
        "executor": {"kind": "command", "command": "true"},
    }
    if draw(st.booleans()):
        doc["max_attempts"] = draw(st.integers(1, 10))
    if draw(st.booleans()):
        doc["labels"] = draw(st.lists(st.text(max_size=10), max_size=3))
    return doc


def dump(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8", "replace")


@st.composite
def broken(draw: st.DrawFn) -> tuple[str, bytes]:
    doc = draw(valid_docs())
    name = f"{doc['id']}.yaml"
    kind = draw(st.sampled_from(("wrong-type", "huge-int", "dup-key", "deep", "unicode",
                                 "non-utf8", "raw", "name")))
    if kind == "wrong-type":
        doc[draw(st.sampled_from(FIELDS))] = draw(values)
        return name, dump(doc)
    text = dump(doc)
    if kind == "huge-int":
        field = draw(st.sampled_from(("issue", "timeout", "labels", "max_attempts")))
        digits = draw(HUGE).encode()
        return name, text + field.encode() + b": " + (b"[" + digits + b"]"
                                                       if field == "labels" else digits) + b"\n"
    if kind == "dup-key":
        field = draw(st.sampled_from(FIELDS))
        return name, text + field.encode() + b": " + dump({"v": draw(values)})[3:]
    if kind == "deep":
        depth = draw(st.integers(10, 3000))
        opener, closer = draw(st.sampled_from(((b"[", b"]"), (b"{a: ", b"}"))))
        return name, text + b"prompt: " + opener * depth + b"1" + closer * depth + b"\n"
    if kind == "unicode":
        odd = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20))
        at = draw(st.integers(0, len(text)))
        return name, text[:at] + odd.encode("utf-8", "surrogatepass") + text[at:]
    if kind == "non-utf8":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80")))
        return name, text[:at] + junk + text[at:]
    if kind == "raw":
        return name, draw(st.binary(max_size=200))
    return draw(st.text(max_size=12)) + ".yaml", text


def judge(path: str, data: bytes) -> TaskSpec | str:
    """Exactly one outcome: a spec, or a one-line reason naming the file. Anything else fails."""
    try:
        spec = parse_task(path, data)
    except ValidationError as exc:
        reason = str(exc)
        assert reason.startswith(f"{exc.where}: ") and exc.problems, reason
        assert all(p and "\n" not in p and "\r" not in p for p in exc.problems), exc.problems
        hook = task_problems(path, data, frozenset(DEFAULT_SPECIALTIES))
        assert hook and all("\n" not in line for line in hook), hook
        return reason
    assert task_problems(path, data, frozenset(DEFAULT_SPECIALTIES)) == []
    return spec


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(valid_docs())
def test_valid_documents_are_accepted(doc: dict[str, Any]) -> None:
    spec = judge(f"tasks/{doc['id']}.yaml", dump(doc))
    assert isinstance(spec, TaskSpec) and spec.id == doc["id"]


@FAST
@given(broken())
def test_broken_documents_get_exactly_one_outcome(case: tuple[str, bytes]) -> None:
    name, data = case
    judge(f"tasks/{name}", data)


@FAST
@given(st.binary(max_size=500))
def test_raw_bytes_get_exactly_one_outcome(data: bytes) -> None:
    assert isinstance(judge("tasks/raw.yaml", data), str | TaskSpec)


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(broken(), min_size=1, max_size=6, unique_by=lambda c: key_for_name(c[0])))
def test_the_agents_snapshot_judges_every_file_once(
    tmp_path_factory: Any, cases: list[tuple[str, bytes]]
) -> None:
    cases = [(n, d) for n, d in cases if "/" not in n and n not in (".yaml", "..yaml")
             and not n.startswith(".") and "\0" not in n]
    assume(cases)  # every name was one git cannot hold: nothing to commit
    work: Path = tmp_path_factory.mktemp("fuzz")
    repo = work / "state.git"
    init_state_repo(repo)
    commit_files(repo, {f"tasks/{n}": d for n, d in cases}, work / "person")
    with state_client(repo, work) as client:
        snap = client.snapshot()
        for name, _ in cases:
            view = snap.tasks[key_for_name(name)]
            assert (view.spec is None) != (view.error is None), view


@pytest.mark.parametrize("name", ["a\nb.yaml", "tab\there.yaml", "cr\r.yaml", "esc\x1b[2J.yaml"])
def test_a_name_with_control_characters_is_one_line_in_every_reason(name: str) -> None:
    # found by the property above: the hook named the file raw, so its line broke in two
    reason = judge(f"tasks/{name}", b"id: [\n")
    assert isinstance(reason, str) and "\n" not in reason
