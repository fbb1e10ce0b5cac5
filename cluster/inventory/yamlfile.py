"""The inventory's three files, each read strictly through the project's one loader (yamlio).

Safe types only; a duplicate key, or a scalar that cannot be built (a 5,000-digit integer),
is a ValidationError naming the file and the line, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ValidationError
from cluster.state import yamlio

HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE = "hosts.yaml", "groups.yaml", "defaults.yaml"


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty or missing optional file).

    ``what`` names an entry at the top level ("host", "group", "key") for the error messages.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(str(path), [f"cannot read: {exc}"]) from exc
    try:
        doc, _ = yamlio.load_strict(text, top_label=what)
    except yamlio.DuplicateKey as dup:
        label = what if dup.top_level else "key"
        raise ValidationError(
            str(path),
            [f"duplicate {label} {dup.key!r} (line {dup.first} and again line {dup.again})"],
        ) from None
    except yaml.YAMLError as exc:
        raise ValidationError(str(path), [yamlio.describe(exc)]) from None
    except RecursionError:
        raise ValidationError(str(path), ["YAML error: nested too deeply"]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValidationError(
            str(path), [f"expected a mapping of {what}s, got {type(doc).__name__}"]
        )
    return {str(key): value for key, value in doc.items()}
