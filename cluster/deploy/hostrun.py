"""One host of a run, whatever its runtime: facts, preflight, plan, apply, verify; undo on failure.

``deploy_task`` and ``rollback_task`` are the Nornir tasks a run gives every host: they open the
host's runtime (``systemdhost`` or ``containerhost``, chosen by ``spec.runtime``), drive it
through the one contract of ``runtime.HostRuntime``, and return a Result carrying the host's
HostOutcome. Each step (connect, facts, preflight, plan, every action, verify, settle, undo) is a
Nornir subtask of it, so the run's processors see every step and the host's MultiResult holds
what each returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar, assert_never

from nornir.core.exceptions import NornirSubTaskError
from nornir.core.task import Result, Task

from cluster.deploy.containerhost import container_host
from cluster.deploy.outcome import HostOutcome, RunContext, failure_reason, timed
from cluster.deploy.runtime import HostRuntime, Plan
from cluster.deploy.systemdhost import systemd_host
from cluster.deploy.wanted import Wanted
from cluster.errors import ClusterError
from cluster.inventory.model import HostSpec, spec_of

F = TypeVar("F")
K = TypeVar("K", bound=str)
T = TypeVar("T")


class Steps:
    """A host task's steps, each run as a Nornir subtask of ``task``, timed per phase.

    A step's exception reaches the caller as itself (Nornir wraps a failed subtask in
    NornirSubTaskError; the step's own error is what the host's outcome names)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.seen: dict[str, float] = {}

    def __call__(self, name: str, work: Callable[[], T], phase: str = "") -> T:
        started = time.monotonic()
        try:
            done = self.task.run(task=_step, name=name, work=work)
        except NornirSubTaskError as exc:
            raise _cause(exc) from None
        finally:
            key = phase or name
            self.seen[key] = self.seen.get(key, 0.0) + time.monotonic() - started
        value: T = done[0].result
        return value

    def phases(self) -> tuple[tuple[str, float], ...]:
        return tuple((k, round(v, 3)) for k, v in self.seen.items())


def _step(task: Task, work: Callable[[], Any]) -> Result:
    """A step's Result; a ClusterError is the step failing (a host problem, kept in its Result
    for the caller), anything else a bug that Nornir reports with its traceback."""
    try:
        return Result(host=task.host, result=work())
    except ClusterError as exc:
        return Result(host=task.host, result=str(exc), exception=exc, failed=True)


def _cause(error: NornirSubTaskError) -> BaseException:
    """The exception the failed step raised."""
    found = [r.exception for r in error.result if r.exception is not None]
    return found[0] if found else error


def host_result(task: Task, outcome: HostOutcome) -> Result:
    """The host task's Result: the outcome, failed and changed as it says, its diffs."""
    return Result(host=task.host, result=outcome, failed=outcome.failed,
                  changed=outcome.status == "changed", diff="\n".join(outcome.diffs))  # fmt: skip


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


def deploy_task(task: Task, ctx: RunContext) -> Result:
    """Converge one host; every failure becomes a failed outcome naming its reason."""
    spec = spec_of(task.host)
    started = time.monotonic()
    steps = Steps(task)
    try:
        wanted = ctx.wanted(spec)
        with ExitStack() as stack:
            runtime = steps("connect", lambda: stack.enter_context(open_runtime(spec, ctx, wanted)))
            outcome = _converge(runtime, spec, ctx, steps)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    return host_result(task, replace(timed(outcome, started), phases=steps.phases()))


def _converge(
    runtime: HostRuntime[F, K], spec: HostSpec, ctx: RunContext, steps: Steps
) -> HostOutcome:
    settings = ctx.settings
    facts = steps("facts", runtime.facts)
    if settings.wants("preflight"):
        problems = steps("preflight", lambda: runtime.preflight(facts))
        if problems:
            text = "; ".join(f"{p.check}: {p.message}" for p in problems)
            return HostOutcome(spec.name, "failed", reason=f"preflight: {text}")
    plan = steps("plan", lambda: runtime.plan(facts).only(settings.tags))
    actions = tuple(str(a) for a in plan.actions)
    diffs = steps("diff", lambda: runtime.diffs(plan)) if settings.diff else ()
    if settings.check or not plan.changed:
        return HostOutcome(spec.name, "changed" if plan.changed else "ok", actions, diffs=diffs)
    try:
        _apply(runtime, plan, steps)
    except ClusterError as exc:
        reason = failure_reason(exc, spec.name)
        back = steps("rolling back", lambda: runtime.undo(plan, facts), phase="undo")
        return HostOutcome(spec.name, "failed", actions, reason, diffs, rolled_back=back)
    return HostOutcome(spec.name, "changed", actions, diffs=diffs)


def _apply(runtime: HostRuntime[F, K], plan: Plan[K], steps: Steps) -> None:
    """Every action of ``plan``, then verify the agent, then drop what undo would need."""
    since = time.time()
    for action in plan.actions:
        steps(str(action)[:60], partial(runtime.apply, plan, action), phase=action.kind)
    steps("verify", lambda: runtime.verify(plan, since))
    steps("settle", lambda: runtime.settle(plan))


def rollback_task(task: Task, ctx: RunContext) -> Result:
    """Return a host to what it ran before (systemd: ``previous`` and ``current`` swap;
    container: the image the current container replaced), verified. A failed rollback is not
    undone: the host stays on what it returned to, reported failed."""
    spec = spec_of(task.host)
    started = time.monotonic()
    steps = Steps(task)
    try:
        with ExitStack() as stack:
            runtime = steps("connect", lambda: stack.enter_context(open_runtime(spec, ctx, None)))
            outcome = _roll_back(runtime, spec, ctx, steps)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    return host_result(task, timed(outcome, started))


def _roll_back(
    runtime: HostRuntime[F, K], spec: HostSpec, ctx: RunContext, steps: Steps
) -> HostOutcome:
    facts = steps("facts", runtime.facts)
    plan = steps("plan", lambda: runtime.rollback_plan(facts))
    actions = tuple(str(a) for a in plan.actions)
    if not ctx.settings.check:
        _apply(runtime, plan, steps)
    return HostOutcome(spec.name, "changed", actions)
