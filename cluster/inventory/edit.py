"""Comment-preserving edits of hosts.yaml (ruamel.yaml round trip), validated before writing."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from cluster.atomicfile import write_atomic
from cluster.errors import ConfigError, ValidationError
from cluster.inventory.load import load_inventory
from cluster.inventory.yamlfile import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE


def add_host(root: Path, name: str, entry: Mapping[str, Any]) -> bytes:
    """Append host ``name`` to ``root/hosts.yaml``; return the file's bytes before the edit.

    Comments, order and quoting of the other entries are kept. The edited inventory is loaded
    and validated first: on any problem the file is left untouched and ValidationError says why.
    """
    original, doc = _load(root)
    if name in doc:
        raise ValidationError(str(root / HOSTS_FILE), [f"host {name!r} already exists"])
    doc[name] = _commented(entry)
    if len(doc) > 1:
        doc.yaml_set_comment_before_after_key(name, before="\n")  # a blank line, like the rest
    _write_validated(root, _dump(doc))
    return original


def remove_host(root: Path, name: str) -> bytes:
    """Delete host ``name`` (and its own inline comments); return the bytes before the edit."""
    original, doc = _load(root)
    if name not in doc:
        raise ConfigError(f"{root / HOSTS_FILE}: no host named {name!r}")
    del doc[name]
    _write_validated(root, _dump(doc))
    return original


def restore_hosts(root: Path, original: bytes) -> None:
    """Put ``hosts.yaml`` back exactly as it was (undo of add_host or remove_host)."""
    _write_atomic(root / HOSTS_FILE, original)


def _load(root: Path) -> tuple[bytes, CommentedMap]:
    path = root / HOSTS_FILE
    try:
        original = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        doc = _yaml().load(original.decode("utf-8"))
    except (YAMLError, UnicodeDecodeError) as exc:
        raise ValidationError(str(path), [f"YAML error: {exc}"]) from exc
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise ValidationError(str(path), ["expected a mapping of hosts"])
    return original, doc


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments, order, flow style and quotes survive
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def _dump(doc: CommentedMap) -> bytes:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue().encode("utf-8")


def _commented(value: Any) -> Any:
    """Mappings as block style, lists of scalars in flow style ([a, b]) as the examples are."""
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _commented(item)
        return node
    if isinstance(value, list | tuple):
        seq = CommentedSeq([_commented(item) for item in value])
        seq.fa.set_flow_style()
        return seq
    return value


def _write_validated(root: Path, text: bytes) -> None:
    """Load the inventory as it would be with ``text`` as hosts.yaml, then write it."""
    with tempfile.TemporaryDirectory(prefix="inventory-") as scratch:
        trial = Path(scratch)
        for name in (GROUPS_FILE, DEFAULTS_FILE):
            if (root / name).is_file():
                shutil.copyfile(root / name, trial / name)
        (trial / HOSTS_FILE).write_bytes(text)
        try:
            load_inventory(trial)
        except ValidationError as exc:
            problems = [p.replace(str(trial), str(root)) for p in exc.problems]
            raise ValidationError(str(root / HOSTS_FILE), problems) from None
    _write_atomic(root / HOSTS_FILE, text)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace hosts.yaml atomically, keeping the mode the operator gave it."""
    write_atomic(path, data, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
