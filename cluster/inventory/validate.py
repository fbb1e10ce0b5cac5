"""The inventory's checks, each adding problems that name the file, the host or group and field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError
from cluster.inventory.model import HostSpec
from cluster.inventory.schema import Defaults, DefaultsData, Entry, HostData, secret_paths
from cluster.inventory.yamlfile import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE
from cluster.state.ids import ID_RULE, is_safe_id

Model = TypeVar("Model", bound=BaseModel)


def refuse_secrets(root: Path, *docs: Mapping[str, Any]) -> None:
    """Raise before anything else when hosts, groups or defaults (in that order) hold a secret."""
    problems = []
    for file, doc in zip((HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE), docs, strict=True):
        for path in secret_paths(dict(doc)):
            problems.append(
                f"{file}: {path!r} looks like a secret: secrets never live in the inventory "
                "(they are deployed to /etc/claude-cluster/secrets.env, mode 0600)"
            )
    if problems:
        raise ValidationError(str(root), problems)


def entries(raw: Mapping[str, Any], file: str, kind: str, problems: list[str]) -> dict[str, Entry]:
    """Each top-level entry of ``file`` that is a valid Entry (an empty body is an empty entry)."""
    parsed: dict[str, Entry] = {}
    for name, body in raw.items():
        entry = parse(Entry, body if body is not None else {}, f"{file}: {kind} {name!r}", problems)
        if entry is not None:
            parsed[name] = entry
    return parsed


def check_names_and_references(
    hosts: Mapping[str, Entry], groups: Mapping[str, Entry], problems: list[str]
) -> None:
    """Host names are agent ids, every group named exists, and no group is its own ancestor."""
    for file, kind, found in ((GROUPS_FILE, "group", groups), (HOSTS_FILE, "host", hosts)):
        for name, entry in found.items():
            where = f"{file}: {kind} {name!r}"
            if kind == "host" and not is_safe_id(name):
                problems.append(f"{where}: bad host name (it is the agent id): expected {ID_RULE}")
            for group in entry.groups:
                if group not in groups:
                    problems.append(f"{where}: field 'groups': unknown group {group!r}")
    if problems:
        return
    cycle = find_cycle({name: entry.groups for name, entry in groups.items()})
    if cycle:  # reported once: every group on the cycle would say the same
        problems.append(f"{GROUPS_FILE}: group {cycle[0]!r}: groups form a cycle: "
                        + " -> ".join(cycle))  # fmt: skip


def find_cycle(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """The first chain of parent groups that comes back to a group on it, from the first group
    (in file order) that leads to one: ``x -> y -> x`` ([] when there is none).

    Nornir follows parents without a guard, so a cycle must be refused before its groups are built.
    """
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> list[str]:
        if name in trail:
            return [*trail, name]
        if name in done:
            return []
        done.add(name)
        for parent in parents[name]:
            found = visit(parent, (*trail, name))
            if found:
                return found
        return []

    for name in parents:
        found = visit(name, ())
        if found:
            return found
    return []


def check_specialties(
    spec: HostSpec, known: frozenset[str], where: str, problems: list[str]
) -> None:
    for specialty in spec.specialties:
        if specialty not in known:
            problems.append(
                f"{where}: field 'data.specialties': unknown specialty {specialty!r} "
                f"(known: {', '.join(sorted(known))}; add it to defaults data extra_specialties)"
            )


def check_addresses(specs: Iterable[HostSpec], problems: list[str]) -> None:
    """Two hosts on one hostname:port are the same machine."""
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.address in seen:
            problems.append(
                f"{HOSTS_FILE}: host {spec.name!r}: duplicate host: {spec.address} is also "
                f"host {seen[spec.address]!r}"
            )
        seen.setdefault(spec.address, spec.name)


def parse(model: type[Model], body: Any, where: str, problems: list[str]) -> Model | None:
    """``body`` as ``model``, or None with the reasons added to ``problems``."""
    if not isinstance(body, dict):
        problems.append(f"{where}: expected a mapping, got {type(body).__name__}")
        return None
    try:
        return model.model_validate(body)
    except PydanticError as exc:
        problems.extend(f"{where}: {_describe(error, model)}" for error in exc.errors())
        return None


def _describe(error: Any, model: type[BaseModel]) -> str:
    loc = [str(part) for part in error["loc"]]
    if model is HostSpec and loc[0] in (*HostData.model_fields, "thresholds"):
        loc = ["data", *loc[1:]] if loc[0] == "thresholds" else ["data", *loc]
    field = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent: type[BaseModel] = model
        if loc[0] == "data":
            parent = DefaultsData if model is Defaults else HostData
        return f"unknown key {field!r} (known: {', '.join(parent.model_fields)})"
    if kind == "missing":
        return f"missing field {field!r} (set it on the host, one of its groups or defaults)"
    return f"field {field!r}: {str(error['msg']).removeprefix('Value error, ')}"
