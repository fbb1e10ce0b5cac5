"""load_inventory: validate a SimpleInventory directory and resolve every host, or say why not."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError
from cluster.inventory.model import HostSpec, Inventory
from cluster.inventory.resolve import GroupCycle, extended_groups, resolve_host
from cluster.inventory.schema import Defaults, DefaultsData, Entry, HostData, secret_paths
from cluster.inventory.yamlfile import read_mapping
from cluster.state.ids import ID_RULE, is_safe_id
from cluster.state.schema import DEFAULT_SPECIALTIES

HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE = "hosts.yaml", "groups.yaml", "defaults.yaml"
Model = TypeVar("Model", bound=BaseModel)


def load_inventory(path: Path | str) -> Inventory:
    """Read hosts.yaml (required), groups.yaml and defaults.yaml (optional) under ``path``.

    Raises ValidationError whose problems each name the file, the host or group and the field.
    """
    root = Path(path)
    if not (root / HOSTS_FILE).is_file():
        raise ValidationError(str(root), [f"no {HOSTS_FILE}: not an inventory directory"])
    raw_hosts = read_mapping(root / HOSTS_FILE, "host")
    raw_groups = read_mapping(root / GROUPS_FILE, "group")
    raw_defaults = read_mapping(root / DEFAULTS_FILE, "key")
    _refuse_secrets(root, raw_hosts, raw_groups, raw_defaults)

    problems: list[str] = []
    defaults = _parse(Defaults, raw_defaults, DEFAULTS_FILE, problems)
    groups = _entries(raw_groups, GROUPS_FILE, "group", problems)
    hosts = _entries(raw_hosts, HOSTS_FILE, "host", problems)
    _check_names_and_references(hosts, groups, problems)
    if problems or defaults is None:
        raise ValidationError(str(root), problems)

    known = frozenset(DEFAULT_SPECIALTIES) | frozenset(defaults.data.extra_specialties)
    specs: list[HostSpec] = []
    for name, entry in hosts.items():
        where = f"{HOSTS_FILE}: host {name!r}"
        spec = _parse(HostSpec, resolve_host(name, entry, groups, defaults), where, problems)
        if spec is not None:
            _check_specialties(spec, known, where, problems)
            specs.append(spec)
    _check_addresses(specs, problems)
    if problems:
        raise ValidationError(str(root), problems)
    return Inventory(root=root, hosts=tuple(specs), known_specialties=known)


def _refuse_secrets(root: Path, *docs: Mapping[str, Any]) -> None:
    problems = []
    for file, doc in zip((HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE), docs, strict=True):
        for path in secret_paths(dict(doc)):
            problems.append(
                f"{file}: {path!r} looks like a secret: secrets never live in the inventory "
                "(they are deployed to /etc/claude-cluster/secrets.env, mode 0600)"
            )
    if problems:
        raise ValidationError(str(root), problems)


def _entries(raw: Mapping[str, Any], file: str, kind: str, problems: list[str]) -> dict[str, Entry]:
    parsed: dict[str, Entry] = {}
    for name, body in raw.items():
        entry = _parse(
            Entry, body if body is not None else {}, f"{file}: {kind} {name!r}", problems
        )
        if entry is not None:
            parsed[name] = entry
    return parsed


def _check_names_and_references(
    hosts: Mapping[str, Entry], groups: Mapping[str, Entry], problems: list[str]
) -> None:
    for file, kind, entries in ((GROUPS_FILE, "group", groups), (HOSTS_FILE, "host", hosts)):
        for name, entry in entries.items():
            where = f"{file}: {kind} {name!r}"
            if kind == "host" and not is_safe_id(name):
                problems.append(f"{where}: bad host name (it is the agent id): expected {ID_RULE}")
            for group in entry.groups:
                if group not in groups:
                    problems.append(f"{where}: field 'groups': unknown group {group!r}")
    if problems:
        return
    for name in groups:
        try:
            extended_groups([name], groups)
        except GroupCycle as exc:
            problems.append(f"{GROUPS_FILE}: group {name!r}: groups form a cycle: {exc}")
            return  # every group on the cycle would say the same


def _check_specialties(
    spec: HostSpec, known: frozenset[str], where: str, problems: list[str]
) -> None:
    for specialty in spec.specialties:
        if specialty not in known:
            problems.append(
                f"{where}: field 'data.specialties': unknown specialty {specialty!r} "
                f"(known: {', '.join(sorted(known))}; add it to defaults data extra_specialties)"
            )


def _check_addresses(specs: list[HostSpec], problems: list[str]) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.address in seen:
            problems.append(
                f"{HOSTS_FILE}: host {spec.name!r}: duplicate host: {spec.address} is also "
                f"host {seen[spec.address]!r}"
            )
        seen.setdefault(spec.address, spec.name)


def _parse(model: type[Model], body: Any, where: str, problems: list[str]) -> Model | None:
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
