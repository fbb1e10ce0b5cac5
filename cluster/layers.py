"""The one settings layering of every plane: defaults < file < ``CLUSTER_<PLANE>_*`` < flags.

A plane (agent, deploy, backup) is a typed model plus its name. :func:`load` stacks, for each
key, the model's default, the plane's YAML file, the ``CLUSTER_<PLANE>_<KEY>`` variable and the
flag given, the later winning, then validates once; a bad key is a ValidationError naming where
the settings came from and the key. docs/configuration.md#settings-layers says the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator
from pydantic import ValidationError as PydanticError

from cluster.errors import ConfigError, ValidationError
from cluster.state import yamlio

Model = TypeVar("Model", bound=BaseModel)
Item = TypeVar("Item")

# The control host's work dir, relative to the project: deploy's wheel cache, lock and mirrors,
# health's mirror, backups (and the local cluster, test hosts, demos below it).
WORK_DIR = Path(".cluster")
# The work dir of an agent and of the `claude-cluster` command, per user (expand it where used).
USER_WORK_DIR = Path("~/.cache/claude-cluster")


def commas(value: Any) -> Any:
    """A comma-separated string (an environment variable, a flag) as the tuple of its parts."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


# A list setting, also written as "a,b" in a file, a variable or a flag.
Listed: TypeAlias = Annotated[tuple[Item, ...], BeforeValidator(commas)]


@dataclass(frozen=True)
class Plane(Generic[Model]):
    """One plane's settings: ``model`` and ``name``, which gives the variables' prefix."""

    name: str
    model: type[Model]
    json_keys: tuple[str, ...] = ()  # keys whose variable holds a JSON object

    @property
    def prefix(self) -> str:
        return f"CLUSTER_{self.name.upper()}_"

    @property
    def file_variable(self) -> str:
        """``CLUSTER_<PLANE>_FILE``: the file, when no path is given."""
        return self.prefix + "FILE"


def load(
    plane: Plane[Model],
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Model:
    """The plane's settings: defaults < ``path`` (else ``CLUSTER_<PLANE>_FILE``'s file) <
    ``CLUSTER_<PLANE>_<KEY>`` variables < ``flags`` (None, "" and [] are 'not given')."""
    env = os.environ if environ is None else environ
    named = env.get(plane.file_variable, "")
    file = path if path is not None else (Path(named) if named else None)
    layered = read_file(file, plane.name) if file is not None else {}
    layered.update(environment(plane, env))
    layered.update(given(flags))
    return validate(plane.model, layered, str(file) if file else f"{plane.name} settings")


def read_file(path: Path, plane: str) -> dict[str, Any]:
    """A settings file as a mapping, read strictly (repeated keys refused, unbuildable scalars
    such as a 5,000-digit integer a YAML error with its line); ConfigError otherwise."""
    try:
        body = yamlio.load_strict(path.read_text(encoding="utf-8"))[0] or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {plane} config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yamlio.describe(exc)}") from exc
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return body


def environment(plane: Plane[Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``CLUSTER_<PLANE>_<KEY>`` variables naming a key of the plane; an empty one is not given."""
    env = os.environ if environ is None else environ
    found = {name: env.get(plane.prefix + name.upper(), "") for name in plane.model.model_fields}
    layered: dict[str, Any] = {name: value for name, value in found.items() if value}
    for key in set(plane.json_keys) & set(layered):
        try:
            layered[key] = json.loads(layered[key])
        except ValueError as exc:
            raise ValidationError(f"{plane.name} settings", [f"{key}: not JSON: {exc}"]) from exc
    return layered


def given(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The flags that were given: None, "" and empty lists mean 'not given'."""
    return {k: v for k, v in flags.items() if v is not None and v != "" and v != [] and v != ()}


def validate(model: type[Model], layered: Mapping[str, Any], where: str) -> Model:
    """``model`` from ``layered``; a ValidationError naming ``where`` and each bad key."""
    try:
        return model.model_validate(dict(layered))
    except PydanticError as exc:
        raise ValidationError(where, [problem(e) for e in exc.errors()]) from exc


def problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"'{where}': {message}" if where else message
