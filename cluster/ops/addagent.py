"""add-agent: validate, add the host to hosts.yaml, deploy only it, wait for its heartbeat."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from cluster.console import StepProgress
from cluster.deploy.outcome import HostOutcome
from cluster.deploy.run import heartbeat_reader, run
from cluster.deploy.settings import DeploySettings
from cluster.errors import ClusterError, ValidationError
from cluster.inventory import Inventory, load_inventory
from cluster.inventory.edit import add_host, restore_hosts
from cluster.state.ids import ID_RULE, is_safe_id
from cluster.state.records import Heartbeat

POLL = 0.5


@dataclass(frozen=True)
class NewAgent:
    """What the operator asked for; None fields inherit from groups and defaults."""

    ip: str
    specialty: str
    name: str = ""
    port: int | None = None
    user: str | None = None
    max_tasks: int | None = None
    runtime: str | None = None

    def entry(self) -> dict[str, Any]:
        body: dict[str, Any] = {"hostname": self.ip}
        if self.port is not None:
            body["port"] = self.port
        if self.user:
            body["username"] = self.user
        data: dict[str, Any] = {"specialties": [self.specialty]}
        if self.max_tasks is not None:
            data["max_tasks"] = self.max_tasks
        if self.runtime:
            data["runtime"] = self.runtime
        body["data"] = data
        return body


@dataclass(frozen=True)
class AddOutcome:
    name: str
    deploy: HostOutcome
    heartbeat: str  # what was seen of the first heartbeat
    kept: bool  # the inventory keeps the host (success, or failure with --keep)


def problems(inventory: Inventory, agent: NewAgent) -> list[str]:
    """Everything wrong with the request, at once (empty: go ahead)."""
    found = []
    try:
        ipaddress.ip_address(agent.ip)
    except ValueError:
        found.append(f"--ip {agent.ip!r} is not an IPv4 or IPv6 address")
    if agent.specialty not in inventory.known_specialties:
        known = ", ".join(sorted(inventory.known_specialties))
        found.append(f"--specialty {agent.specialty!r} is unknown (known: {known}; extra ones "
                     "go under extra_specialties in defaults.yaml)")  # fmt: skip
    if not is_safe_id(agent.name):
        found.append(f"--name {agent.name!r} is not a valid agent id: {ID_RULE}")
    elif agent.name in inventory.names:
        found.append(f"--name {agent.name!r} is already a host in {inventory.root}/hosts.yaml")
    if agent.runtime not in (None, "systemd", "container"):
        found.append(f"--runtime {agent.runtime!r}: expected systemd or container")
    if agent.max_tasks is not None and not 1 <= agent.max_tasks <= 64:
        found.append(f"--max-tasks {agent.max_tasks}: expected 1-64")
    for host in inventory.hosts:  # without --port, loading the edited inventory checks it
        if agent.port is not None and (host.hostname, host.port) == (agent.ip, agent.port):
            found.append(f"{agent.ip}:{agent.port} is already host {host.name!r}")
    return found


def default_name(inventory: Inventory, specialty: str) -> str:
    """``agent-<specialty>-<n>``, the first n not taken."""
    number = 1
    while f"agent-{specialty}-{number}" in inventory.names:
        number += 1
    return f"agent-{specialty}-{number}"


def add_agent(
    settings: DeploySettings,
    agent: NewAgent,
    *,
    keep: bool = False,
    console: Console | None = None,
    environ: Mapping[str, str] | None = None,
    heartbeat_timeout: float | None = None,
) -> AddOutcome:
    """Refuse a bad request untouched; else add, deploy, wait; undo the edit on failure."""
    console = console or Console(stderr=True)
    inventory = load_inventory(settings.inventory)
    if not agent.name:
        agent = NewAgent(**{**agent.__dict__, "name": default_name(inventory, agent.specialty)})
    found = problems(inventory, agent)
    if found:
        raise ValidationError("add-agent", found)
    original = add_host(settings.inventory, agent.name, agent.entry())  # validates the result
    console.print(f"added {agent.name} ({agent.ip}) to {settings.inventory}/hosts.yaml")
    scoped = settings.model_copy(update={"limit": (agent.name,)})
    try:
        outcome = run(scoped, console, environ=environ)[0]
        seen = "" if outcome.failed else wait_for_heartbeat(
            console, scoped, agent.name, heartbeat_timeout or settings.verify_timeout)
    except (ClusterError, KeyboardInterrupt) as exc:
        if not keep:
            restore_hosts(settings.inventory, original)
        raise ClusterError(f"add-agent {agent.name}: {exc}"
                           + ("" if keep else " (inventory restored)")) from exc  # fmt: skip
    if outcome.failed and not keep:
        restore_hosts(settings.inventory, original)
    return AddOutcome(agent.name, outcome, seen, kept=keep or not outcome.failed)


def wait_for_heartbeat(console: Console, settings: DeploySettings, name: str,
                       timeout: float) -> str:  # fmt: skip
    """The wait for the first heartbeat, drawn as progress (a bar, or a plain line)."""
    what = f"wait for {name}'s first heartbeat (up to {timeout:.0f}s)"
    with StepProgress(console, f"add-agent {name}", total=1) as steps, steps.step(what):
        return _first_heartbeat(settings, name, timeout)


def _first_heartbeat(
    settings: DeploySettings, name: str, timeout: float, clock: Callable[[], float] = time.monotonic
) -> str:
    inventory = load_inventory(settings.inventory)
    reader = heartbeat_reader(settings, [inventory.host(name)])
    if reader is None:
        return "heartbeat not checked (hosts name several state repos; set state_url)"
    started = clock()
    beat: Heartbeat | None = None
    while clock() - started < timeout:
        try:
            beat = reader.beat(name)
        except ClusterError:
            beat = None
        if beat is not None and beat.state in ("running", "paused"):
            return f"first heartbeat: pid {beat.pid}, {beat.state}, from {beat.host}"
        time.sleep(POLL)
    raise ClusterError(f"no heartbeat from {name} within {timeout:.0f}s "
                       f"(last seen: {beat.state if beat else 'none'})")  # fmt: skip
