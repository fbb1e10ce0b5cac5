"""Reads one inventory YAML file strictly: safe types only, duplicate keys are an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ValidationError


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a repeated mapping key fails instead of overwriting."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _Duplicate(str(key), seen[key], line, key_node.start_mark.column == 0)
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


class _Duplicate(Exception):
    def __init__(self, key: str, first: int, again: int, top_level: bool) -> None:
        super().__init__(key)
        self.key, self.first, self.again, self.top_level = key, first, again, top_level


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty or missing optional file).

    ``what`` names an entry at the top level ("host", "group", "key") for the duplicate message.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(str(path), [f"cannot read: {exc}"]) from exc
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _Duplicate as dup:
        label = what if dup.top_level else "key"
        raise ValidationError(
            str(path),
            [f"duplicate {label} {dup.key!r} (line {dup.first} and again line {dup.again})"],
        ) from None
    except yaml.YAMLError as exc:
        raise ValidationError(str(path), [f"YAML error: {exc}"]) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValidationError(
            str(path), [f"expected a mapping of {what}s, got {type(doc).__name__}"]
        )
    return {str(key): value for key, value in doc.items()}
