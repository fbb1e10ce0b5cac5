"""The task validator: every rule names the file, the field and what was expected."""

from __future__ import annotations

import pytest
import yaml

from cluster.errors import ValidationError
from cluster.state.ids import key_for_name
from cluster.state.schema import MAX_TASK_BYTES, parse_task

GOOD = {
    "id": "fix-login", "title": "Fix login", "specialty": "backend", "repo": "acme/web",
    "executor": {"kind": "command", "command": "make fix"},
}


def dump(doc: object) -> bytes:
    return yaml.safe_dump(doc).encode()


def reason(path: str, data: bytes) -> str:
    with pytest.raises(ValidationError) as info:
        parse_task(path, data)
    assert info.value.where == path
    return str(info.value)


def test_good_task_gets_defaults() -> None:
    spec = parse_task("tasks/fix-login.yaml", dump(GOOD))
    assert (spec.priority.value, spec.base, spec.timeout, spec.max_attempts) == (
        "medium", "main", 1800, 3)
    assert spec.executor.command == "make fix"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, "field 'colour': unknown field"),
        ({"specialty": "astrology"}, "unknown specialty 'astrology'"),
        ({"id": "../x"}, "unsafe id '../x'"),
        ({"id": "other"}, "must equal the file name 'fix-login'"),
        ({"priority": "urgent"}, "field 'priority'"),
        ({"timeout": 0}, "field 'timeout'"),
        ({"budget": {"max_usd": -1}}, "field 'budget.max_usd'"),
        ({"executor": {"kind": "command"}}, "needs a non-empty 'command'"),
        ({"depends_on": ["fix-login"]}, "cannot depend on itself"),
        ({"depends_on": ["Bad/Id"]}, "unsafe id 'Bad/Id'"),
    ],
)
def test_wrong_fields_are_named(change: dict[str, object], expected: str) -> None:
    assert expected in reason("tasks/fix-login.yaml", dump({**GOOD, **change}))


def test_missing_fields_are_named() -> None:
    text = reason("tasks/fix-login.yaml", dump({"id": "fix-login"}))
    for name in ("title", "specialty", "repo"):
        assert f"field '{name}': required field missing" in text


def test_yaml_error_gives_line_and_column() -> None:
    text = reason("tasks/a.yaml", b"id: a\ntitle: x: y\n")
    assert "YAML error at line 2, column 9: mapping values are not allowed" in text


def test_non_utf8_gives_offset() -> None:
    assert "not UTF-8: invalid byte at offset 4" in reason("tasks/a.yaml", b"id: \xff\xfe")


def test_oversized_file_is_refused_before_parsing() -> None:
    data = b"#" * (MAX_TASK_BYTES + 1)
    assert f"more than {MAX_TASK_BYTES}" in reason("tasks/a.yaml", data)


@pytest.mark.parametrize(("data", "found"), [(b"- a\n- b\n", "list"), (b"", "an empty document")])
def test_documents_that_are_not_mappings(data: bytes, found: str) -> None:
    assert f"found {found}" in reason("tasks/a.yaml", data)


def test_unsafe_file_names() -> None:
    assert "unsafe file name 'Bad Name'" in reason("tasks/Bad Name.yaml", dump(GOOD))
    assert "named <id>.yaml" in reason("tasks/notes.txt", dump(GOOD))


def test_custom_specialties_extend_the_known_set() -> None:
    doc = {**GOOD, "specialty": "ml"}
    assert parse_task("tasks/fix-login.yaml", dump(doc), frozenset({"ml"})).specialty == "ml"


def test_keys_of_unsafe_names_never_collide_with_ids() -> None:
    assert key_for_name("fix-login.yaml") == "fix-login"
    bad = key_for_name("Bad Name.yaml")
    assert bad.startswith("bad.") and bad != key_for_name("Bad Name2.yaml")
