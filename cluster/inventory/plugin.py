"""ClusterInventory, the project's Nornir inventory plugin: an inventory directory, validated.

It reads hosts.yaml (required), groups.yaml and defaults.yaml strictly, refuses secrets, checks
every entry, builds Nornir's hosts, groups and defaults, and then validates each host as Nornir
resolves it (host > its groups, depth first > defaults) into the HostSpec the host carries.
Registered under ``ClusterInventory`` on import and by the ``nornir.plugins.inventory`` entry
point, so ``InitNornir(inventory={"plugin": "ClusterInventory", "options": {"path": ...}})``
works anywhere the package is installed. Every problem is a ValidationError naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nornir.core.inventory import Defaults as NornirDefaults
from nornir.core.inventory import Group, Groups, Host, Hosts, Inventory, ParentGroups
from nornir.core.plugins.inventory import InventoryPluginRegister

from cluster.errors import ValidationError
from cluster.inventory import validate
from cluster.inventory.model import AgentHost, HostSpec, Thresholds, known_specialties
from cluster.inventory.schema import Defaults, Entry, HostData
from cluster.inventory.yamlfile import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE, read_mapping

PLUGIN_NAME = "ClusterInventory"
THRESHOLD_FIELDS = tuple(Thresholds.model_fields)


class ClusterInventory:
    """Loads the inventory directory ``path`` (Nornir passes the plugin's options here)."""

    def __init__(self, path: str = "inventory") -> None:
        self.root = Path(path)

    def load(self) -> Inventory:
        root = self.root
        if not (root / HOSTS_FILE).is_file():
            raise ValidationError(str(root), [f"no {HOSTS_FILE}: not an inventory directory"])
        raw_hosts = read_mapping(root / HOSTS_FILE, "host")
        raw_groups = read_mapping(root / GROUPS_FILE, "group")
        raw_defaults = read_mapping(root / DEFAULTS_FILE, "key")
        validate.refuse_secrets(root, raw_hosts, raw_groups, raw_defaults)

        problems: list[str] = []
        defaults = validate.parse(Defaults, raw_defaults, DEFAULTS_FILE, problems)
        groups = validate.entries(raw_groups, GROUPS_FILE, "group", problems)
        hosts = validate.entries(raw_hosts, HOSTS_FILE, "host", problems)
        validate.check_names_and_references(hosts, groups, problems)
        if problems or defaults is None:
            raise ValidationError(str(root), problems)

        inventory = build(hosts, groups, defaults)
        known = known_specialties(inventory.defaults)
        specs: list[HostSpec] = []
        for host in inventory.hosts.values():
            where = f"{HOSTS_FILE}: host {host.name!r}"
            spec = validate.parse(HostSpec, resolved(host), where, problems)
            if spec is not None and isinstance(host, AgentHost):
                validate.check_specialties(spec, known, where, problems)
                host.spec = spec
                specs.append(spec)
        validate.check_addresses(specs, problems)
        if problems:
            raise ValidationError(str(root), problems)
        return inventory


def build(hosts: Mapping[str, Entry], groups: Mapping[str, Entry], defaults: Defaults) -> Inventory:
    """Nornir's objects for checked entries (every group named exists, none is its own parent)."""
    common = NornirDefaults(hostname=defaults.hostname, port=defaults.port,
                            username=defaults.username, data=_data(defaults.data))  # fmt: skip
    built = Groups({
        name: Group(name=name, hostname=entry.hostname, port=entry.port, username=entry.username,
                    data=_data(entry.data), defaults=common)
        for name, entry in groups.items()
    })  # fmt: skip
    for name, entry in groups.items():
        built[name].groups = ParentGroups(built[parent] for parent in entry.groups)
    members = Hosts({
        name: AgentHost(name=name, hostname=entry.hostname, port=entry.port,
                        username=entry.username, data=_data(entry.data), defaults=common,
                        groups=ParentGroups(built[group] for group in entry.groups))
        for name, entry in hosts.items()
    })  # fmt: skip
    return Inventory(hosts=members, groups=built, defaults=common)


def resolved(host: Host) -> dict[str, Any]:
    """The host's fields as Nornir resolves them (HostSpec's input); a field set nowhere is left
    out, so that HostSpec's default or 'missing' applies. Like any Nornir data, a list or a
    mapping (specialties, labels) is not merged: the first place that sets it wins."""
    data = host.extended_data()
    data.pop("extra_specialties", None)  # a defaults-only key: the specialties a host may name
    thresholds = {field: data.pop(field) for field in THRESHOLD_FIELDS if field in data}
    fields = {"name": host.name, "hostname": host.hostname, "port": host.port,
              "username": host.username, "groups": tuple(g.name for g in host.groups),
              **data, "thresholds": thresholds}  # fmt: skip
    return {key: value for key, value in fields.items() if value is not None}


def _data(data: HostData) -> dict[str, Any]:
    """Only what the file sets: an unset key must leave Nornir to look further."""
    return data.model_dump(exclude_none=True)


InventoryPluginRegister.register(PLUGIN_NAME, ClusterInventory)
