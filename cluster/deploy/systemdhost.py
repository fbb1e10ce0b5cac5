"""A ``runtime: systemd`` host: the host runtime over one SSH connection (releases, a unit)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import assert_never

from cluster.deploy.claudecli import CliPack
from cluster.deploy.diffs import file_diffs
from cluster.deploy.facts import HostFacts
from cluster.deploy.outcome import RunContext, failure_reason
from cluster.deploy.plan import Kind, plan_host, plan_rollback
from cluster.deploy.preflight import Problem, preflight
from cluster.deploy.remote import HostOps
from cluster.deploy.runtime import Action, Plan
from cluster.deploy.verify import VerifyFailed, verify_systemd
from cluster.deploy.wanted import Wanted
from cluster.errors import ClusterError, ConfigError, HostError
from cluster.inventory.model import HostSpec
from cluster.transport import connect
from cluster.transport.openssh import SshTarget
from cluster.units import layout

CLI_TOUCHED: tuple[Kind, ...] = ("push_cli", "link_cli", "install", "switch")  # then: check it


class CliVerifyFailed(VerifyFailed):
    """The release's Claude Code CLI did not run, or is not the pinned version."""


def ssh_target(spec: HostSpec, ctx: RunContext) -> SshTarget:
    """``spec`` as both clients reach it: its key and known_hosts, which it must name."""
    if spec.ssh_key_file is None or spec.known_hosts_file is None:
        raise ConfigError(f"host {spec.name!r}: needs data ssh_key_file and known_hosts_file")
    return SshTarget(spec.hostname, spec.port, spec.username, spec.ssh_key_file.expanduser(),
                     spec.known_hosts_file.expanduser(),
                     max(1, round(ctx.settings.connect_timeout)))  # fmt: skip


@contextlib.contextmanager
def host_connection(spec: HostSpec, ctx: RunContext) -> Iterator[HostOps]:
    """Open the run's one connection to ``spec``; at most ``handshakes`` open at once. Its
    bulk streams go to the same target over ``ssh`` (HostOps.target)."""
    target = ssh_target(spec, ctx)
    with ctx.handshakes:
        try:
            conn = connect(target.host, target.port, target.user, target.key_file,
                           target.known_hosts, timeout=ctx.settings.connect_timeout)  # fmt: skip
        except HostError as exc:
            raise type(exc)(spec.name, str(exc).split(": ", 1)[-1]) from exc
    try:
        yield HostOps(spec.name, conn, target)
    finally:
        conn.close()


@contextlib.contextmanager
def systemd_host(spec: HostSpec, ctx: RunContext, wanted: Wanted | None) -> Iterator[SystemdHost]:
    """The runtime of ``spec`` for one run, its connection open (``wanted`` None: rollback)."""
    with host_connection(spec, ctx) as ops:
        yield SystemdHost(ops, spec, ctx, wanted)


@dataclass
class SystemdHost:
    """A systemd host as a HostRuntime[HostFacts, Kind]."""

    ops: HostOps
    spec: HostSpec
    ctx: RunContext
    wanted: Wanted | None

    def _want(self) -> Wanted:
        if self.wanted is None:
            raise ConfigError(f"{self.spec.name}: this step needs the wanted state")
        return self.wanted

    def facts(self) -> HostFacts:
        wanted = self.wanted
        files = tuple(f.path for f in wanted.files) if wanted else ()
        dirs = tuple(d.path for d in wanted.dirs) if wanted else ()
        return self.ops.facts(files, dirs)

    def preflight(self, facts: HostFacts) -> list[Problem]:
        return preflight(facts, self.spec.thresholds, self.spec.runtime)

    def plan(self, facts: HostFacts) -> Plan[Kind]:
        return plan_host(facts, self._want(), self.ctx.settings.keep_releases)

    def rollback_plan(self, facts: HostFacts) -> Plan[Kind]:
        return plan_rollback(facts)

    def diffs(self, plan: Plan[Kind]) -> tuple[str, ...]:
        wanted = self._want()
        written = [f for f in wanted.files if f.path in plan.of("write")]
        return file_diffs(written, self.ops.read, wanted.secrets)

    def apply(self, plan: Plan[Kind], action: Action[Kind]) -> None:
        ops = self.ops
        match action.kind:
            case "prepare":
                ops.prepare(self._want().dirs)
            case "push_wheels":
                wheels = self._want().wheels
                ops.push_wheels(wheels.directory,
                                {name: wheels.manifest[name] for name in action.items})  # fmt: skip
            case "push_cli":
                ops.push_cli(self._cli())
            case "link_cli":
                ops.link_cli(self._want().release, self._cli().install_name)
            case "prune_cli":
                ops.prune_cli(action.items)
            case "install":
                wanted = self._want()
                ops.install(wanted.release, tuple(wanted.wheels.manifest), wanted.wheels.in_place)
            case "switch":
                ops.switch(action.items[0])
            case "write":
                ops.write([f for f in self._want().files if f.path in action.items])
            case "prune":
                ops.prune(action.items, ())
            case "daemon_reload":
                if not plan.has("enable"):  # `systemctl enable` reloads the configuration itself
                    ops.systemctl("daemon-reload")
            case "enable":
                ops.systemctl("enable", "--quiet", layout.UNIT_NAME)
            case "restart":
                ops.systemctl("restart", layout.UNIT_NAME)
            case _:
                assert_never(action.kind)

    def _cli(self) -> CliPack:
        cli = self._want().cli
        if cli is None:
            raise ConfigError(f"{self.spec.name}: a Claude Code CLI step without a CLI to ship")
        return cli

    def verify(self, plan: Plan[Kind], since: float) -> None:
        """The pinned CLI runs, when this run touched it; the unit's own process beats, when it
        restarted (its MainPID in the heartbeat: stricter than ``since``)."""
        cli = self.wanted.cli if self.wanted is not None else None
        if cli is not None and any(plan.has(k) for k in CLI_TOUCHED):
            verify_cli(self.ops, self.spec.name, cli.version)
        if plan.has("restart"):
            verify_systemd(self.ops, self.spec.name, "", self.ctx.reader,
                           self.ctx.settings.verify_timeout)  # fmt: skip

    def settle(self, plan: Plan[Kind]) -> None:
        if plan.has("write"):
            self.ops.discard_backups(plan.of("write"))

    def undo(self, plan: Plan[Kind], facts: HostFacts) -> str:
        """Put back files and the release links; restart the unit, or stop it (first deploy)."""
        ops, before = self.ops, facts.current
        try:
            if before is None:
                ops.systemctl("disable", "--now", "--quiet", layout.UNIT_NAME)
            written = plan.of("write")
            if written:
                ops.restore(written)
            release = self.wanted.release if self.wanted is not None else None
            if plan.has("link_cli") and release in facts.releases and release is not None:
                ops.link_cli(release, facts.cli_links.get(release))
            if plan.has("switch") and before is not None:
                ops.switch(before)
            ops.systemctl("daemon-reload")
            if before is None:
                return "nothing (first deploy): unit stopped and disabled"
            if plan.has("restart"):
                ops.systemctl("restart", layout.UNIT_NAME)
            return f"release {before} and the files before this run"
        except ClusterError as exc:
            return f"rollback failed too: {exc}"


def verify_cli(ops: HostOps, host: str, pinned: str) -> None:
    """The release's Claude Code CLI runs on the host and says it is the pinned version."""
    try:
        said = ops.cli_version()
    except ClusterError as exc:
        raise CliVerifyFailed(host, f"claude-code: {layout.CLI_BINARY} --version failed: "
                                    f"{failure_reason(exc, host)}") from exc  # fmt: skip
    if said != pinned:
        raise CliVerifyFailed(host, f"claude-code: {layout.CLI_BINARY} --version says "
                                    f"{said or 'nothing'}, the pin is {pinned}")  # fmt: skip
