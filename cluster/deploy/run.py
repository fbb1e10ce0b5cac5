"""A deploy or rollback run: lock, build once, then Nornir runs each selected host's deploy (or
rollback) as a task on its threads, all at once or in batches; its AggregatedResult is the run's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from nornir.core import Nornir
from nornir.core.filter import F
from nornir.core.task import AggregatedResult, MultiResult, Result, Task
from nornir.plugins.runners import ThreadedRunner
from pydantic import ValidationError
from rich.console import Console

from cluster.deploy.claudecli import CliPack, pack_cli
from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.hostrun import deploy_task, host_result, rollback_task
from cluster.deploy.image import ensure_agent_image
from cluster.deploy.lock import deploy_lock
from cluster.deploy.outcome import HostOutcome, RunContext
from cluster.deploy.settings import DeploySettings
from cluster.deploy.summary import LiveProgress
from cluster.deploy.wanted import (
    MULTIPLEX_SSH_CONFIG,
    Wanted,
    read_state_access,
    uses_claude_code,
    wanted_state,
)
from cluster.deploy.wheels import WheelSet, build_wheels
from cluster.errors import ConfigError, SecretMissing
from cluster.inventory import HostSpec, load_inventory
from cluster.inventory.limit import limited
from cluster.inventory.limit import select as select
from cluster.inventory.model import specs_of
from cluster.secret import Secret
from cluster.secrets_file import lookup_all
from cluster.transport import docker
from cluster.units.agent_yaml import agent_config
from cluster.units.secrets_env import SECRET_NAMES, agent_needs

HostTask = Callable[..., Result]  # a Nornir task: (task, ctx=RunContext) -> Result


class RunOutcomes(list[HostOutcome]):
    """One HostOutcome per host in the order they ran, read from Nornir's AggregatedResult,
    which stays as ``result`` and decides whether the run failed (``failed``, ``failed_hosts``).
    Hosts a rolling deploy did not attempt are ``skipped``, not failed."""

    def __init__(self, result: AggregatedResult) -> None:
        super().__init__(outcome_of(host, multi) for host, multi in result.items())
        self.result = result

    @property
    def failed(self) -> bool:
        return self.result.failed

    @property
    def failed_hosts(self) -> list[str]:
        return list(self.result.failed_hosts)


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
) -> RunOutcomes:
    """Deploy (or roll back) the selected hosts; one outcome per host, failures included."""
    console = console or Console(stderr=True)
    nornir = limited(load_inventory(settings.inventory), settings.limit)
    hosts = list(specs_of(nornir.inventory.hosts.values()))
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
            client = docker.client()
            cli = cli or cli_pack(settings, console)
            ctx.image = ensure_agent_image(client, wheels, settings.root, settings.container_base,
                                           cli)  # fmt: skip
        task = rollback_task if rollback else deploy_task
        with LiveProgress(console, [h.name for h in hosts], what) as progress:
            return RunOutcomes(run_hosts(nornir.with_processors([progress]), ctx, task, what))


def run_hosts(nornir: Nornir, ctx: RunContext, task: HostTask, name: str) -> AggregatedResult:
    """Nornir runs ``task`` on every host of ``nornir``; with ``batch``, a batch at a time, and
    once a batch has a failure the hosts of the later ones are skipped (rolling deploy)."""
    names = list(nornir.inventory.hosts)
    size = ctx.settings.batch or len(names) or 1
    results = AggregatedResult(name)
    failed_batch = 0
    for number, start in enumerate(range(0, len(names), size), start=1):
        batch = names[start : start + size]
        workers = max(1, min(ctx.settings.workers, len(batch)))
        part = nornir.filter(F(name__any=batch)).with_runner(ThreadedRunner(workers))
        if failed_batch:
            reason = f"not attempted: batch {failed_batch} had a failure (rolling deploy stops)"
            results.update(part.run(task=skip_task, name="skipped", reason=reason))
            continue
        results.update(part.run(task=task, name=name, ctx=ctx))
        if results.failed:
            failed_batch = number
    return results


def skip_task(task: Task, reason: str) -> Result:
    """A host a rolling deploy does not attempt."""
    return host_result(task, HostOutcome(task.host.name, "skipped", reason=reason))


def outcome_of(host: str, multi: MultiResult) -> HostOutcome:
    """The HostOutcome a host's task returned, or a failure when the task raised (a bug, not a
    host problem: Nornir kept the exception)."""
    value = multi[0].result if len(multi) else None
    if isinstance(value, HostOutcome):
        return value
    return HostOutcome(host, "failed", reason=f"internal error: {multi.exception!r}")


def _no_wanted(host: HostSpec) -> Wanted:
    raise ConfigError(f"{host.name}: rollback computes no wanted state")
