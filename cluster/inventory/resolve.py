"""Nornir's inheritance, host > groups (depth first, each once) > defaults, as pure functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from cluster.inventory.schema import Defaults, Entry, HostData

CONNECTION_FIELDS = ("hostname", "port", "username")
THRESHOLD_FIELDS = ("min_cpus", "min_memory_gb", "min_disk_gb", "max_clock_skew_s")


class GroupCycle(ValueError):
    """A group is its own ancestor."""


def extended_groups(names: Sequence[str], groups: Mapping[str, Entry]) -> list[str]:
    """Groups in the order Nornir's ``Host.extended_groups`` visits them.

    For host groups [a, b], a -> [1, 2], 1 -> [X], b -> [2, 3]: a, 1, X, 2, b, 3.
    Every name must be a key of ``groups``.
    """
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise GroupCycle(" -> ".join((*trail, name)))
        if name in order:
            return
        order.append(name)
        for parent in groups[name].groups:
            visit(parent, (*trail, name))

    for name in names:
        visit(name, ())
    return order


def resolve_host(
    name: str, entry: Entry, groups: Mapping[str, Entry], defaults: Defaults
) -> dict[str, Any]:
    """The host's fields (as HostSpec input) with each value taken from the first place that
    sets it; fields set nowhere are left out so that HostSpec's defaults or 'missing' apply.

    Like Nornir, a list value (specialties) is not merged: the first place that sets it wins.
    """
    chain = [entry, *(groups[g] for g in extended_groups(entry.groups, groups))]

    def first(get: Callable[[Any], Any]) -> Any:
        for place in chain:
            value = get(place)
            if value is not None:
                return value
        return get(defaults)

    resolved: dict[str, Any] = {"name": name, "groups": tuple(entry.groups)}
    for field in CONNECTION_FIELDS:
        resolved[field] = first(attrgetter(field))
    thresholds: dict[str, Any] = {}
    for field in HostData.model_fields:
        target = thresholds if field in THRESHOLD_FIELDS else resolved
        target[field] = first(attrgetter(f"data.{field}"))
    resolved["thresholds"] = {k: v for k, v in thresholds.items() if v is not None}
    return {k: v for k, v in resolved.items() if v is not None}
