"""YAML through libyaml when PyYAML has it (ten times faster per record), else pure Python."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load(text: str | bytes) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader, C or Python


class DuplicateKey(ConstructorError):
    """A mapping key given twice; ``first`` and ``again`` are 1-based lines, ``top_level``
    says whether the mapping is the document itself (a task field, an inventory host)."""

    def __init__(self, key: str, first: int, mark: Any, top_level: bool) -> None:
        super().__init__(None, None, f"duplicate key {key[:40]!r} (first at line {first})", mark)
        self.key, self.first, self.again, self.top_level = key, first, mark.line + 1, top_level


class StrictLoader(_Loader):  # type: ignore[misc]
    """The safe loader for documents people write (task files, inventory files).

    A repeated mapping key is an error (a reviewer reads the first, PyYAML applies the last),
    and a scalar that cannot be built (a 5,000-digit integer, 2001-02-30) is a YAMLError with
    its line instead of the plain ValueError PyYAML lets through. ``top_lines`` maps each key
    of the top-level mapping to its line, so that a schema error can name the line too;
    ``top_label`` is what such a key is called in that hint ("field", "host").
    """

    def __init__(self, stream: Any, top_label: str = "field") -> None:
        super().__init__(stream)
        self.top_lines: dict[str, int] = {}
        self.top_label = top_label
        self._root: Any = None

    def construct_document(self, node: Any) -> Any:
        self._root = node
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    self.top_lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)
        return super().construct_document(node)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, IndexError) as exc:
            what = str(node.tag).rsplit(":", 1)[-1]
            first = str(exc).split(";")[0].split(":")[0].strip() or type(exc).__name__
            line = node.start_mark.line + 1
            above = [key for key, at in self.top_lines.items() if at <= line]
            nearest = max(above, key=self.top_lines.__getitem__) if above else None
            field = f" ({self.top_label} {nearest!r})" if above else ""
            raise ConstructorError(None, None, f"cannot read this {what}: {first}{field}",
                                   node.start_mark) from exc

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: construct_mapping below says so with its mark
                if first is not None:
                    raise DuplicateKey(str(key), first, key_node.start_mark, node is self._root)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_strict(text: str, top_label: str = "field") -> tuple[Any, dict[str, int]]:
    """One document read by StrictLoader, and the line of each of its top-level keys."""
    loader = StrictLoader(text, top_label)
    try:
        return loader.get_single_data(), loader.top_lines
    finally:
        loader.dispose()


def describe(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: "YAML error at line L, column C: problem"."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"YAML error{where}: {problem}"


def dump(document: Any) -> str:
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
