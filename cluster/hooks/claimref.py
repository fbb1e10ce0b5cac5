"""The pre-receive rules for refs/claims/<key> and refs/agents/<id>: who may write what."""

from __future__ import annotations

import re

from cluster.hooks.push import Push, Update
from cluster.hooks.recordref import CLAIM_FILES, read_record
from cluster.state.ids import (
    AGENTS,
    CLAIMS,
    ID_RULE,
    TASKS_DIR,
    archive_path,
    is_safe_id,
    key_for_name,
)
from cluster.state.records import Claim, ClaimRecord, Heartbeat, Release, Result
from cluster.state.statuses import EXPIRED, counts, next_attempt
from cluster.state.treediff import lookup

BAD_KEY = re.compile(r"bad\.[0-9a-f]{16}")
NO_CLAIM_STATUSES = ("invalid", "cancelled")


def check_claim(push: Push, update: Update, folded: set[str]) -> list[str]:
    key = update.ref[len(CLAIMS) :]
    if not (is_safe_id(key) or BAD_KEY.fullmatch(key)):
        return [f"{update.ref}: {key!r} is not a task key ({ID_RULE})"]
    if update.new is None:
        if key in folded or _archived(push, key):
            return []
        return [f"{update.ref}: claim refs are deleted only by a fold that archives the task "
                "on main in the same push (agents write results; folds delete)"]
    read = read_record(push.store, update.new, CLAIM_FILES)
    if read.problem is not None or read.record is None:
        return [f"{update.ref} {update.new[:12]}: {read.problem}"]
    record = read.record
    assert not isinstance(record, Heartbeat)
    where = f"{update.ref} {update.new[:12]}: {read.name}"
    if record.task != key:
        return [f"{where}: field 'task': {record.task!r} is not this ref's task {key!r}"]
    if not is_safe_id(record.agent):
        return [f"{where}: field 'agent': unsafe id {record.agent!r}: expected {ID_RULE}"]
    if update.old is None:
        problem = _first(push, key, record, read.parents)
    else:
        problem = _on_tip(push, update.old, record, read.parents)
    return [f"{where}: {problem}"] if problem else []


def _first(push: Push, key: str, record: ClaimRecord, parents: tuple[str, ...]) -> str | None:
    """A new claim ref: a first claim, or a terminal result written without a claim."""
    if parents:
        return "a new claim ref starts with a parentless commit"
    if isinstance(record, Release):
        return "a release must sit on the releasing agent's claim"
    if isinstance(record, Result):
        if record.status not in NO_CLAIM_STATUSES:
            return (f"a result without a claim is {' or '.join(NO_CLAIM_STATUSES)}, "
                    f"not {record.status!r}")
        return None if record.reason else "field 'reason': a result without a claim says why"
    if _archived(push, key):
        return f"task {key!r} is archived on main"
    if key not in _task_keys(push):
        return f"no task {key!r} under {TASKS_DIR}/ on main"
    return None


def _on_tip(push: Push, old: str, record: ClaimRecord, parents: tuple[str, ...]) -> str | None:
    """A write on an existing claim ref: renewal, takeover, release, result or cancel."""
    tip = read_record(push.store, old, CLAIM_FILES)
    held = None if isinstance(tip.record, Heartbeat) else tip.record
    if isinstance(record, Claim) and isinstance(held, Claim) and parents == tip.parents:
        if (record.agent, record.attempt) == (held.agent, held.attempt):
            return None  # a renewal replaces the tip, same parents
        return (f"a renewal keeps agent and attempt ({held.agent}, attempt {held.attempt}), "
                f"not ({record.agent}, attempt {record.attempt})")
    if parents != (old,):
        shown = ", ".join(p[:12] for p in parents) or "none"
        return f"must sit on the ref's current tip {old[:12]} (parents: {shown})"
    if isinstance(held, Result):
        return f"the task is finished ({held.status}): its result waits for the fold"
    if isinstance(record, Claim):
        if not isinstance(held, Claim):
            return None
        attempt = next_attempt(held.attempt, counts(EXPIRED))  # the one counting rule
        if record.takeover_of != old or record.attempt != attempt:
            return f"a takeover names takeover_of {old[:12]} and attempt {attempt}"
        return None
    if isinstance(record, Result) and record.status == "cancelled":
        return None if record.reason else "field 'reason': a cancel says why"
    if not isinstance(held, Claim) or (held.agent, held.attempt) != (
            record.agent, record.attempt):
        kind = "result" if isinstance(record, Result) else "release"
        owner = f"a {type(held).__name__.lower()} by {held.agent}" if held else "unreadable"
        return (f"a {kind} must sit on a live claim by the same agent and attempt "
                f"({record.agent}, attempt {record.attempt}); the tip is {owner}")
    return None


def _archived(push: Push, key: str) -> bool:
    main = push.main_after()
    return main is not None and lookup(
        push.store, push.store.commit(main).tree, archive_path(key)) is not None


def _task_keys(push: Push) -> set[str]:
    main = push.main_after()
    if main is None:
        return set()
    entry = lookup(push.store, push.store.commit(main).tree, TASKS_DIR)
    if entry is None or not entry.is_tree:
        return set()
    return {key_for_name(name) for name in push.store.tree(entry.sha)}


def check_agent(push: Push, update: Update) -> list[str]:
    agent = update.ref[len(AGENTS) :]
    if not is_safe_id(agent):
        return [f"{update.ref}: {agent!r} is not an agent id ({ID_RULE})"]
    if update.new is None:
        return []  # pruning a gone agent's heartbeat
    read = read_record(push.store, update.new, ("agent.yaml",))
    where = f"{update.ref} {update.new[:12]}"
    if read.problem is not None or not isinstance(read.record, Heartbeat):
        return [f"{where}: {read.problem}"]
    if read.parents:
        return [f"{where}: a heartbeat is one parentless commit, replaced in place"]
    if read.record.id != agent:
        return [f"{where}: agent.yaml: field 'id': {read.record.id!r} is not this ref's "
                f"agent {agent!r}"]
    return []
