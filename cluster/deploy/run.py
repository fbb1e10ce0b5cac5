"""A deploy or rollback run: lock, build once, every selected host in parallel (or batches)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from nornir.core.task import Result, Task
from pydantic import ValidationError
from rich.console import Console

from cluster.deploy.claudecli import CliPack, pack_cli
from cluster.deploy.containerhost import deploy_container, rollback_container
from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.hostrun import deploy_host, rollback_host
from cluster.deploy.image import ensure_agent_image
from cluster.deploy.lock import deploy_lock
from cluster.deploy.outcome import HostOutcome, Progress, RunContext
from cluster.deploy.settings import DeploySettings
from cluster.deploy.summary import live_progress
from cluster.deploy.wanted import (
    MULTIPLEX_SSH_CONFIG,
    Wanted,
    read_state_access,
    uses_claude_code,
    wanted_state,
)
from cluster.deploy.wheels import WheelSet, build_wheels
from cluster.errors import ConfigError, SecretMissing
from cluster.inventory import HostSpec, Inventory, load_inventory
from cluster.inventory.nornir_init import init_nornir
from cluster.secret import Secret
from cluster.secrets_file import lookup_all
from cluster.testhosts import engine
from cluster.units.agent_yaml import agent_config
from cluster.units.secrets_env import SECRET_NAMES, agent_needs

HostFn = Callable[[HostSpec, RunContext], HostOutcome]


def select(inventory: Inventory, limit: Sequence[str]) -> list[HostSpec]:
    """Hosts named in ``limit`` or in one of its groups (every host when empty)."""
    if not limit:
        return list(inventory.hosts)
    known = set(inventory.names) | {g for h in inventory.hosts for g in h.groups}
    unknown = sorted(set(limit) - known)
    if unknown:
        raise ConfigError(f"--limit: no host or group named {', '.join(unknown)}")
    return [h for h in inventory.hosts if h.name in limit or set(h.groups) & set(limit)]


def collect_secrets(
    settings: DeploySettings, environ: Mapping[str, str] | None
) -> dict[str, Secret]:
    """Every secret deploy knows that the environment or the secrets file sets."""
    found = lookup_all(SECRET_NAMES, settings.secrets_file, environ)
    return {name: secret for name, secret in found.items() if secret}


def check_secrets(
    settings: DeploySettings, hosts: Sequence[HostSpec], secrets: Mapping[str, Secret]
) -> None:
    """Refuse the run before any host is touched when a selected agent lacks a secret it needs.

    A host whose agent configuration is itself invalid is left to fail on its own.
    """
    missing: dict[tuple[str, str], list[str]] = {}
    for host in hosts:
        try:
            needs = agent_needs(agent_config(host, **settings.agent))
        except (ConfigError, ValidationError):
            continue
        for name, why in needs.required.items():
            if name not in secrets:
                missing.setdefault((name, why), []).append(host.name)
    if missing:
        where = f"the environment or {settings.secrets_file}" if settings.secrets_file else (
            "the environment")
        raise SecretMissing("; ".join(
            f"{name} is not set (looked in {where}): {why} needs it on {', '.join(names)}"
            for (name, why), names in sorted(missing.items())))  # fmt: skip


def heartbeat_reader(settings: DeploySettings, hosts: Sequence[HostSpec]) -> HeartbeatReader | None:
    """How the control host reads heartbeats: ``state_url`` or the one repo all hosts share."""
    urls = {h.state_repo for h in hosts}
    url = settings.state_url or (urls.pop() if len(urls) == 1 else None)
    if url is None:
        return None
    return HeartbeatReader(url, settings.work_dir, settings.state_ssh_command)


def wanted_for(
    settings: DeploySettings,
    wheels: WheelSet,
    secrets: Mapping[str, Secret],
    cli: CliPack | None = None,
) -> Callable[[HostSpec], Wanted]:
    key, known = read_state_access(settings.state_ssh_key, settings.state_known_hosts)
    ssh_config = MULTIPLEX_SSH_CONFIG if settings.state_ssh_multiplex else None
    return partial(wanted_state, wheels=wheels, secrets=secrets, agent=settings.agent,
                   state_key=key, state_known_hosts=known, ssh_config=ssh_config,
                   cli=cli)  # fmt: skip


def needs_cli(settings: DeploySettings, hosts: Sequence[HostSpec]) -> bool:
    """A selected systemd host's agent uses claude-code, or an agent image is to be built (it
    carries the CLI for every container host). An invalid agent config fails on its own."""
    for host in hosts:
        if host.runtime == "container":
            if not host.container_image:
                return True
            continue
        try:
            if uses_claude_code(agent_config(host, **settings.agent)):
                return True
        except (ConfigError, ValidationError):
            continue
    return False


def cli_pack(settings: DeploySettings, console: Console) -> CliPack:
    """The pinned CLI's tarball from the cache, packed from this host's install when missing."""
    pack = pack_cli(settings.cli_cache_dir, settings.claude_code_package)
    if pack.built:
        console.print(f"packed the Claude Code CLI {pack.version}: {pack.path} "
                      f"({pack.size / 1e6:.0f} MB, sha256 {pack.sha256[:12]})")  # fmt: skip
    return pack


def run(
    settings: DeploySettings,
    console: Console | None = None,
    *,
    rollback: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[HostOutcome]:
    """Deploy (or roll back) the selected hosts; one outcome per host, failures included."""
    console = console or Console(stderr=True)
    inventory = load_inventory(settings.inventory)
    hosts = select(inventory, settings.limit)
    what = "rollback" if rollback else "deploy"
    with deploy_lock(settings.lock_file, what):
        cli: CliPack | None = None
        if rollback:
            wanted: Callable[[HostSpec], Wanted] = _no_wanted
        else:
            secrets = collect_secrets(settings, environ)
            check_secrets(settings, hosts, secrets)
            wheels = build_wheels(settings.root, settings.cache_dir)
            cli = cli_pack(settings, console) if needs_cli(settings, hosts) else None
            wanted = wanted_for(settings, wheels, secrets, cli)
        ctx = RunContext(settings, wanted, threading.BoundedSemaphore(settings.handshakes),
                         heartbeat_reader(settings, hosts))  # fmt: skip
        if not rollback and any(h.runtime == "container" and not h.container_image for h in hosts):
            client = engine.client()
            cli = cli or cli_pack(settings, console)
            ctx.image = ensure_agent_image(client, wheels, settings.root, settings.container_base,
                                           cli)  # fmt: skip
        with live_progress(console, [h.name for h in hosts], what) as report:
            ctx.progress = report
            return run_hosts(inventory, hosts, ctx, rollback_any if rollback else deploy_any)


def deploy_any(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """systemd hosts over SSH; container hosts through the docker SDK."""
    return deploy_container(spec, ctx) if spec.runtime == "container" else deploy_host(spec, ctx)


def rollback_any(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    if spec.runtime == "container":
        return rollback_container(spec, ctx)
    return rollback_host(spec, ctx)


def run_hosts(
    inventory: Inventory, hosts: Sequence[HostSpec], ctx: RunContext, fn: HostFn
) -> list[HostOutcome]:
    """Nornir runs ``fn`` per host on its threads; with ``batch`` a failed batch stops the rest."""
    size = ctx.settings.batch or len(hosts)
    batches = [hosts[i : i + size] for i in range(0, len(hosts), size)]
    outcomes: list[HostOutcome] = []
    for number, batch in enumerate(batches, start=1):
        outcomes += _run_batch(inventory, batch, ctx, fn)
        if any(o.failed for o in outcomes) and number < len(batches):
            rest = [h for later in batches[number:] for h in later]
            reason = f"not attempted: batch {number} had a failure (rolling deploy stops)"
            outcomes += [HostOutcome(h.name, "skipped", reason=reason) for h in rest]
            _report_all(ctx.progress, rest)
            break
    return outcomes


def _run_batch(
    inventory: Inventory, batch: Sequence[HostSpec], ctx: RunContext, fn: HostFn
) -> list[HostOutcome]:
    names = {h.name for h in batch}
    specs = {h.name: h for h in batch}
    workers = max(1, min(ctx.settings.workers, len(batch)))
    nornir = init_nornir(inventory, num_workers=workers)
    selected = nornir.filter(filter_func=lambda host: host.name in names)
    results = selected.run(task=_nornir_task, name="claude-cluster", fn=fn, ctx=ctx, specs=specs)
    outcomes = []
    for host in batch:
        multi = results[host.name]
        value = multi[0].result if len(multi) else None
        if isinstance(value, HostOutcome):
            outcomes.append(value)
        else:  # a bug, not a host problem: Nornir kept the exception
            reason = f"internal error: {multi.exception!r}"
            outcomes.append(HostOutcome(host.name, "failed", reason=reason))
    return outcomes


def _nornir_task(task: Task, fn: HostFn, ctx: RunContext, specs: dict[str, HostSpec]) -> Result:
    outcome = fn(specs[task.host.name], ctx)
    return Result(host=task.host, result=outcome, failed=outcome.failed,
                  changed=outcome.status == "changed")  # fmt: skip


def _report_all(report: Progress, hosts: Sequence[HostSpec]) -> None:
    for host in hosts:
        report(host.name, "skipped")


def _no_wanted(host: HostSpec) -> Wanted:
    raise ConfigError(f"{host.name}: rollback computes no wanted state")
