"""YAML through libyaml when PyYAML has it (ten times faster per record), else pure Python."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load(text: str | bytes) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader, C or Python


class StrictLoader(_Loader):  # type: ignore[misc]
    """The safe loader for documents people write (task files).

    A repeated mapping key is an error (a reviewer reads the first, PyYAML applies the last),
    and a scalar that cannot be built (a 5,000-digit integer, 2001-02-30) is a YAMLError with
    its line instead of the plain ValueError PyYAML lets through. ``top_lines`` maps each key
    of the top-level mapping to its line, so that a schema error can name the line too.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.top_lines: dict[str, int] = {}

    def construct_document(self, node: Any) -> Any:
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
            field = f" (field {max(above, key=self.top_lines.__getitem__)!r})" if above else ""
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
                    raise ConstructorError(
                        None, None,
                        f"duplicate key {str(key)[:40]!r} (first at line {first})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_strict(text: str) -> tuple[Any, dict[str, int]]:
    """One document read by StrictLoader, and the line of each of its top-level keys."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data(), loader.top_lines
    finally:
        loader.dispose()


def dump(document: Any) -> str:
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
