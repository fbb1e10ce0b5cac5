"""One host, one connection: facts, preflight, plan, apply, verify; roll back what failed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace

from cluster.deploy.diffs import file_diffs
from cluster.deploy.facts import HostFacts
from cluster.deploy.outcome import HostOutcome, RunContext, failure_reason, timed
from cluster.deploy.plan import Action, Kind, Plan, plan_host
from cluster.deploy.preflight import preflight
from cluster.deploy.remote import HostOps
from cluster.deploy.verify import VerifyFailed, verify_systemd
from cluster.deploy.wanted import Wanted
from cluster.errors import ClusterError, ConfigError, HostError
from cluster.inventory.model import HostSpec
from cluster.transport import connect
from cluster.units import layout

CLI_TOUCHED: tuple[Kind, ...] = ("push_cli", "link_cli", "install", "switch")  # then: check it


class CliVerifyFailed(VerifyFailed):
    """The release's Claude Code CLI did not run, or is not the pinned version."""


@contextlib.contextmanager
def host_connection(spec: HostSpec, ctx: RunContext) -> Iterator[HostOps]:
    """Open the run's one connection to ``spec``; at most ``handshakes`` open at once."""
    if spec.ssh_key_file is None or spec.known_hosts_file is None:
        raise ConfigError(f"host {spec.name!r}: needs data ssh_key_file and known_hosts_file")
    timeout = ctx.settings.connect_timeout
    with ctx.handshakes:
        try:
            conn = connect(spec.hostname, spec.port, spec.username, spec.ssh_key_file.expanduser(),
                           spec.known_hosts_file.expanduser(), timeout=timeout)  # fmt: skip
        except HostError as exc:
            raise type(exc)(spec.name, str(exc).split(": ", 1)[-1]) from exc
    try:
        yield HostOps(spec.name, conn)
    finally:
        conn.close()


class Phases:
    """Seconds spent per phase of one host's run (connect, facts, each action, verify)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seen[name] = self.seen.get(name, 0.0) + seconds

    def items(self) -> tuple[tuple[str, float], ...]:
        return tuple((k, round(v, 3)) for k, v in self.seen.items())


def deploy_host(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Converge one host; every failure becomes a failed outcome naming its reason."""
    started = time.monotonic()
    phase = Phases()
    try:
        wanted = ctx.wanted(spec)
        ctx.progress(spec.name, "connect")
        connecting = time.monotonic()
        with host_connection(spec, ctx) as ops:
            phase.add("connect", time.monotonic() - connecting)
            outcome = _converge(ops, spec, wanted, ctx, phase)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    ctx.progress(spec.name, outcome.status)
    return replace(timed(outcome, started), phases=phase.items())


def _converge(
    ops: HostOps, spec: HostSpec, wanted: Wanted, ctx: RunContext, phase: Phases
) -> HostOutcome:
    settings = ctx.settings
    ctx.progress(spec.name, "facts")
    with phase("facts"):
        files, dirs = tuple(f.path for f in wanted.files), tuple(d.path for d in wanted.dirs)
        facts = ops.facts(files, dirs)
    if settings.wants("preflight"):
        problems = preflight(facts, spec.thresholds, spec.runtime)
        if problems:
            text = "; ".join(f"{p.check}: {p.message}" for p in problems)
            return HostOutcome(spec.name, "failed", reason=f"preflight: {text}")
    plan = plan_host(facts, wanted, settings.keep_releases).only(settings.tags)
    actions = tuple(str(a) for a in plan.actions)
    written = [f for f in wanted.files if f.path in plan.of("write")]
    diffs = file_diffs(written, ops.read, wanted.secrets) if settings.diff else ()
    if settings.check or not plan.changed:
        return HostOutcome(spec.name, "changed" if plan.changed else "ok", actions, diffs=diffs)
    try:
        _apply(ops, plan, wanted, ctx, phase)
        if wanted.cli is not None and any(plan.has(k) for k in CLI_TOUCHED):
            with phase("verify_cli"):
                verify_cli(ops, spec.name, wanted.cli.version)
        if plan.has("restart"):
            ctx.progress(spec.name, "verify")
            with phase("verify"):
                verify_systemd(ops, spec.name, "", ctx.reader, settings.verify_timeout)
        if plan.has("write"):
            ops.discard_backups(plan.of("write"))
    except ClusterError as exc:
        reason = failure_reason(exc, spec.name)
        back = _undo(ops, plan, facts, wanted, ctx)
        return HostOutcome(spec.name, "failed", actions, reason, diffs, rolled_back=back)
    return HostOutcome(spec.name, "changed", actions, diffs=diffs)


def _apply(ops: HostOps, plan: Plan, wanted: Wanted, ctx: RunContext, phase: Phases) -> None:
    for action in plan.actions:
        if action.kind == "daemon_reload" and plan.has("enable"):
            continue  # `systemctl enable` reloads the manager's configuration itself
        ctx.progress(wanted.host, str(action)[:60])
        with phase(action.kind):
            _apply_one(ops, action, wanted)


def _apply_one(ops: HostOps, action: Action, wanted: Wanted) -> None:
    kind = action.kind
    if kind == "prepare":
        ops.prepare(wanted.dirs)
    elif kind == "push_wheels":
        ops.push_wheels(wanted.wheels.directory, action.items)
    elif kind == "push_cli" and wanted.cli is not None:
        ops.push_cli(wanted.cli)
    elif kind == "link_cli" and wanted.cli is not None:
        ops.link_cli(wanted.release, wanted.cli.install_name)
    elif kind == "prune_cli":
        ops.prune_cli(action.items)
    elif kind == "install":
        ops.install(wanted.release, tuple(wanted.wheels.manifest), wanted.wheels.in_place)
    elif kind == "switch":
        ops.switch(wanted.release)
    elif kind == "write":
        ops.write([f for f in wanted.files if f.path in action.items])
    elif kind == "prune":
        ops.prune(action.items, ())
    elif kind == "daemon_reload":
        ops.systemctl("daemon-reload")
    elif kind == "enable":
        ops.systemctl("enable", "--quiet", layout.UNIT_NAME)
    elif kind == "restart":
        ops.systemctl("restart", layout.UNIT_NAME)


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


def _undo(ops: HostOps, plan: Plan, facts: HostFacts, wanted: Wanted, ctx: RunContext) -> str:
    """Put back what this run changed: files, the release links; restart or stop the unit."""
    ctx.progress(ops.name, "rolling back")
    before = facts.current
    try:
        if before is None:
            ops.systemctl("disable", "--now", "--quiet", layout.UNIT_NAME)
        written = plan.of("write")
        if written:
            ops.restore(written)
        if plan.has("link_cli") and wanted.release in facts.releases:
            ops.link_cli(wanted.release, facts.cli_links.get(wanted.release))
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


def rollback_host(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Return ``spec`` to its previous release (``previous`` and ``current`` swap), verified."""
    started = time.monotonic()
    try:
        ctx.progress(spec.name, "connect")
        with host_connection(spec, ctx) as ops:
            facts = ops.facts((), ())
            if facts.previous is None or facts.previous not in facts.releases:
                reason = f"no previous release to return to (current: {facts.current})"
                outcome = HostOutcome(spec.name, "failed", reason=reason)
            elif ctx.settings.check:
                outcome = HostOutcome(spec.name, "changed", (f"switch: {facts.previous}",))
            else:
                ctx.progress(spec.name, f"switch to {facts.previous}")
                ops.switch(facts.previous)
                ops.systemctl("restart", layout.UNIT_NAME)
                verify_systemd(ops, spec.name, "", ctx.reader, ctx.settings.verify_timeout)
                actions = (f"switch: {facts.previous}", "restart")
                outcome = HostOutcome(spec.name, "changed", actions)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    ctx.progress(spec.name, outcome.status)
    return timed(outcome, started)
