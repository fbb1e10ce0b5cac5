"""Settings in layers: ``PREFIX<FIELD>`` variables, the flags given, one way to report them.

Each loader stacks the layers itself, in the order defaults < file < environment < flags: the
agent's file (agent.yaml) sits below the environment; deploy and backup settings have no file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError

Model = TypeVar("Model", bound=BaseModel)


def environment(
    model: type[BaseModel], prefix: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``PREFIX<FIELD>`` variables naming a field of ``model``; an empty one is not given."""
    env = os.environ if environ is None else environ
    found = {name: env.get(prefix + name.upper(), "") for name in model.model_fields}
    return {name: value for name, value in found.items() if value}


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
