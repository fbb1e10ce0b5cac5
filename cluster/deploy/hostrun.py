"""One host of a run, whatever its runtime: facts, preflight, plan, apply, verify; undo on failure.

``deploy_host`` and ``rollback_host`` are the entry points for every host: they open the
host's runtime (``systemdhost`` or ``containerhost``, chosen by ``spec.runtime``) and drive it
through the one contract of ``runtime.HostRuntime``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, TypeVar, assert_never

from cluster.deploy.containerhost import container_host
from cluster.deploy.outcome import HostOutcome, RunContext, failure_reason, timed
from cluster.deploy.runtime import HostRuntime, Plan
from cluster.deploy.systemdhost import systemd_host
from cluster.deploy.wanted import Wanted
from cluster.errors import ClusterError
from cluster.inventory.model import HostSpec

F = TypeVar("F")
K = TypeVar("K", bound=str)


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


def open_runtime(
    spec: HostSpec, ctx: RunContext, wanted: Wanted | None
) -> AbstractContextManager[HostRuntime[Any, Any]]:
    """The runtime ``spec`` names, for one run (``wanted`` None: a rollback)."""
    match spec.runtime:
        case "systemd":
            return systemd_host(spec, ctx, wanted)
        case "container":
            return container_host(spec, ctx, wanted)
        case _:
            assert_never(spec.runtime)


def deploy_host(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Converge one host; every failure becomes a failed outcome naming its reason."""
    started = time.monotonic()
    phase = Phases()
    try:
        wanted = ctx.wanted(spec)
        ctx.progress(spec.name, "connect")
        with contextlib.ExitStack() as stack:
            with phase("connect"):
                runtime = stack.enter_context(open_runtime(spec, ctx, wanted))
            outcome = _converge(runtime, spec, ctx, phase)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    ctx.progress(spec.name, outcome.status)
    return replace(timed(outcome, started), phases=phase.items())


def _converge(
    runtime: HostRuntime[F, K], spec: HostSpec, ctx: RunContext, phase: Phases
) -> HostOutcome:
    settings = ctx.settings
    ctx.progress(spec.name, "facts")
    with phase("facts"):
        facts = runtime.facts()
    if settings.wants("preflight"):
        problems = runtime.preflight(facts)
        if problems:
            text = "; ".join(f"{p.check}: {p.message}" for p in problems)
            return HostOutcome(spec.name, "failed", reason=f"preflight: {text}")
    plan = runtime.plan(facts).only(settings.tags)
    actions = tuple(str(a) for a in plan.actions)
    diffs = runtime.diffs(plan) if settings.diff else ()
    if settings.check or not plan.changed:
        return HostOutcome(spec.name, "changed" if plan.changed else "ok", actions, diffs=diffs)
    try:
        _apply(runtime, plan, spec, ctx, phase)
    except ClusterError as exc:
        reason = failure_reason(exc, spec.name)
        ctx.progress(spec.name, "rolling back")
        back = runtime.undo(plan, facts)
        return HostOutcome(spec.name, "failed", actions, reason, diffs, rolled_back=back)
    return HostOutcome(spec.name, "changed", actions, diffs=diffs)


def _apply(
    runtime: HostRuntime[F, K], plan: Plan[K], spec: HostSpec, ctx: RunContext, phase: Phases
) -> None:
    """Every action of ``plan``, then verify the agent, then drop what undo would need."""
    since = time.time()
    for action in plan.actions:
        ctx.progress(spec.name, str(action)[:60])
        with phase(action.kind):
            runtime.apply(plan, action)
    ctx.progress(spec.name, "verify")
    with phase("verify"):
        runtime.verify(plan, since)
    runtime.settle(plan)


def rollback_host(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Return ``spec`` to what it ran before (systemd: ``previous`` and ``current`` swap;
    container: the image the current container replaced), verified. A failed rollback is not
    undone: the host stays on what it returned to, reported failed."""
    started = time.monotonic()
    try:
        ctx.progress(spec.name, "connect")
        with open_runtime(spec, ctx, None) as runtime:
            outcome = _roll_back(runtime, spec, ctx)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    ctx.progress(spec.name, outcome.status)
    return timed(outcome, started)


def _roll_back(runtime: HostRuntime[F, K], spec: HostSpec, ctx: RunContext) -> HostOutcome:
    plan = runtime.rollback_plan(runtime.facts())
    actions = tuple(str(a) for a in plan.actions)
    if not ctx.settings.check:
        _apply(runtime, plan, spec, ctx, Phases())
    return HostOutcome(spec.name, "changed", actions)
