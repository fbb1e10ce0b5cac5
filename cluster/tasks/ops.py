"""Invoke adapters for add-agent, remove-agent, health, logs and restart; logic in cluster/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.console import Console

from cluster.errors import ClusterError

INVENTORY = "inventory directory (default: inventory/)"
LIMIT = "comma-separated hosts or groups (default: every host)"


def _deploy_settings(**flags: Any) -> Any:
    from cluster.deploy.settings import load_settings

    return load_settings({k: v for k, v in flags.items() if v not in (None, "")})


def _limit(limit: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in limit.split(",") if part.strip())


@task(name="add-agent", help={
    "ip": "the host's IP address", "specialty": "what it claims (a known specialty)",
    "name": "host name and agent id (default: agent-<specialty>-<n>)",
    "port": "SSH port (default: from groups/defaults)", "user": "SSH user (default: inherited)",
    "max_tasks": "tasks at once (default: inherited)", "runtime": "systemd or container",
    "keep": "keep the inventory entry even if the deploy fails",
    "inventory": INVENTORY, "secrets_file": "KEY=VALUE file, mode 0600",
})  # fmt: skip
def add_agent(
    c: Context, ip: str, specialty: str, name: str = "", port: int = 0, user: str = "",
    max_tasks: int = 0, runtime: str = "", keep: bool = False, inventory: str = "",
    secrets_file: str = "",
) -> None:  # fmt: skip
    """Add a host to inventory/hosts.yaml, deploy only it, wait for its first heartbeat."""
    from cluster.deploy.summary import print_summary
    from cluster.ops.addagent import NewAgent, add_agent

    console = Console()
    agent = NewAgent(ip, specialty, name, port or None, user or None, max_tasks or None,
                     runtime or None)  # fmt: skip
    try:
        settings = _deploy_settings(inventory=inventory, secrets_file=secrets_file)
        outcome = add_agent(settings, agent, keep=keep, console=console)
    except ClusterError as exc:
        raise Exit(f"add-agent: {exc}", exc.exit_code) from exc
    print_summary(console, [outcome.deploy], f"add-agent {outcome.name}")
    if outcome.deploy.failed:
        kept = "kept in the inventory (--keep)" if outcome.kept else "removed from the inventory"
        raise Exit(f"add-agent {outcome.name} failed: {outcome.deploy.reason}; {kept}", 1)
    console.print(f"[green]{outcome.name} is up[/]: {outcome.heartbeat}")


@task(name="remove-agent", help={
    "name": "the host to remove", "force": "remove it even if it cannot be reached",
    "inventory": INVENTORY,
})  # fmt: skip
def remove_agent(c: Context, name: str, force: bool = False, inventory: str = "") -> None:
    """Stop the agent (SIGTERM: it releases its claims), disable it, drop it from hosts.yaml."""
    from cluster.ops.remove import remove_agent as remove

    try:
        removal = remove(Path(inventory or "inventory"), name, force)
    except ClusterError as exc:
        raise Exit(f"remove-agent: {exc}", exc.exit_code) from exc
    Console().print(f"removed {removal.name} from the inventory: {removal.note}")


@task(help={
    "limit": LIMIT, "json": "print JSON (for scripts)",
    "watch": "re-check every --interval seconds until Ctrl-C", "interval": "seconds (watch)",
    "inventory": INVENTORY, "state_url": "how this machine reads the state repo",
    "compose": "the Compose cluster on this machine instead of the inventory's hosts",
    "project": "with --compose: its Compose project (default claude-cluster)",
    "port": "with --compose: the state service's port on 127.0.0.1 (default 2222)",
    "wide": "print the table at full width, never cutting a cell (the default off a terminal)",
})  # fmt: skip
def health(
    c: Context, limit: str = "", json: bool = False, watch: bool = False, interval: float = 10.0,
    inventory: str = "", state_url: str = "", compose: bool = False, project: str = "",
    port: int = 0, wide: bool = False,
) -> None:  # fmt: skip
    """Hosts, agents and the state repo at a glance. Exit 0 healthy, 1 degraded, 2 down."""
    from cluster.health.render import as_json, print_health

    check = (_compose_check(project, port) if compose
             else _fleet_check(inventory, limit, state_url))
    console = Console()
    while True:
        try:
            fleet = check()
        except ClusterError as exc:
            raise Exit(f"health: {exc}", 2) from exc
        if json:
            print(as_json(fleet))
        else:
            if watch:
                console.clear()
            print_health(console, fleet, wide=wide)
        if not watch:
            break
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            break
    if fleet.exit_code:
        raise Exit(code=fleet.exit_code)


def _fleet_check(inventory: str, limit: str, state_url: str) -> Any:
    from cluster.health.gather import HealthSettings, check_fleet

    settings = HealthSettings(inventory=Path(inventory or "inventory"), limit=_limit(limit),
                              state_url=state_url or None)  # fmt: skip
    return lambda: check_fleet(settings)


def _compose_check(project: str, port: int) -> Any:
    from cluster.compose.cluster import PROJECT, STATE_PORT, ComposeSettings
    from cluster.health.compose import check_compose

    settings = ComposeSettings(Path(__file__).resolve().parents[2], project=project or PROJECT,
                               state_port=port or STATE_PORT)  # fmt: skip
    return lambda: check_compose(settings)


@task(help={
    "name": "the host", "follow": "keep streaming until Ctrl-C",
    "task": "a task id: its attempt logs instead of the agent's journal",
    "lines": "lines of history", "inventory": INVENTORY,
})  # fmt: skip
def logs(
    c: Context, name: str, follow: bool = False, task: str = "", lines: int = 100,
    inventory: str = "",
) -> None:  # fmt: skip
    """The agent's journal (or container log) on NAME, or one task's attempt logs there."""
    from cluster.inventory import load_inventory
    from cluster.ops.hosts import host_ops
    from cluster.ops.logs import logs_argv, stream

    try:
        found = load_inventory(Path(inventory or "inventory"))
        if name not in found.names:
            raise ClusterError(f"no host named {name!r} in the inventory")
        spec = found.host(name)
        with host_ops(spec) as ops:
            stream(ops.conn, name, logs_argv(spec, task or None, follow, lines))
    except ClusterError as exc:
        raise Exit(f"logs: {exc}", exc.exit_code) from exc


@task(help={"limit": LIMIT, "inventory": INVENTORY})
def restart(c: Context, limit: str = "", inventory: str = "") -> None:
    """Restart the agents (SIGTERM first: held tasks are released) and verify each came back."""
    from cluster.deploy.run import heartbeat_reader, select
    from cluster.inventory import load_inventory
    from cluster.ops.restart import restart_hosts

    try:
        settings = _deploy_settings(inventory=inventory)
        hosts = select(load_inventory(settings.inventory), _limit(limit))
        failed = restart_hosts(hosts, heartbeat_reader(settings, hosts), settings.verify_timeout)
    except ClusterError as exc:
        raise Exit(f"restart: {exc}", exc.exit_code) from exc
    console = Console()
    for host, reason in failed.items():
        console.print(f"{host}: " + (f"[red]failed[/]: {reason}" if reason else "[green]ok[/]"))
    bad = [h for h, r in failed.items() if r]
    if bad:
        raise Exit(f"restart failed on {len(bad)} host(s): {', '.join(bad)}", 1)
