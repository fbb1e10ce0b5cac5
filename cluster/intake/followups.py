"""The follow-up task a trigger on an agent's pull request becomes (docs/state-protocol.md,
"Follow-ups"): its id, round, chain and YAML, checked by the validator, or why it is none.

Pure planning over a state snapshot; the one outside question, whether the author may make
work, is the ``access`` callable the caller brings (the forge's permission, the allowlist).
The text of a trigger is data: it is never copied into the task, the agent fetches it at run
time and quotes it as untrusted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cluster.agent.pulls import MARKER, Pull, Trigger
from cluster.errors import ValidationError
from cluster.intake.taskdoc import Known, Planned
from cluster.state import yamlio
from cluster.state.ids import is_safe_id
from cluster.state.schema import BRANCH_PREFIX, TaskSpec, TriggerKind, parse_task
from cluster.state.snapshot import Snapshot

PREFIX = "fu-"
LETTERS: dict[TriggerKind, str] = {
    "review": "r", "comment": "c", "review_comment": "l", "check_run": "k", "status": "s"}
DEFAULT_COMMAND = "/cluster fix"
LABEL = "follow-up"
MAX_TITLE = 200


@dataclass(frozen=True)
class FollowUpPolicy:
    """Which conversations on an agent's pull request become follow-up work.

    ``command`` addresses the agents (a comment must carry it at the start of a line, maybe
    followed by a specialty: ``/cluster fix frontend``); ``checks``: failed check runs and
    commit statuses trigger too; ``allow``: logins that may trigger without write access;
    ``polite``: an author without access gets one comment saying so; ``bot_login`` and
    ``marker`` recognise the agents' own comments, which never trigger, and ``bot_login``
    (when known) the agents' pull requests: one on a ``cluster/`` branch that someone else
    opened (from a fork, say) is not theirs.
    """

    command: str = DEFAULT_COMMAND
    checks: bool = False
    allow: frozenset[str] = frozenset()
    polite: bool = False
    bot_login: str | None = None
    marker: str = MARKER

    def allowed(self, login: str) -> bool:
        return login.lower() in {name.lower() for name in self.allow}

    def is_bot(self, trigger: Trigger) -> bool:
        by_bot = bool(self.bot_login) and trigger.author.lower() == str(self.bot_login).lower()
        return by_bot or self.marker in trigger.body


@dataclass(frozen=True)
class Refused:
    """A trigger that would have made a new task but for its author's access."""

    id: str
    trigger: Trigger
    pull: Pull

    @property
    def reason(self) -> str:
        return (f"{self.pull.repo}#{self.pull.number}: {self.trigger.kind} {self.trigger.id} "
                f"by {self.trigger.author}, who has no write access and is not allowlisted")


Access = Callable[[str, str], bool]  # (login, repo): may this author make work?
Plan = Planned | Known | Refused | str


def pull_prefix(repo: str, pr: int) -> str:
    """What the ids of every follow-up of pull request ``pr`` on ``repo`` begin with."""
    digest = hashlib.sha1(f"{repo.lower()}#{pr}".encode(), usedforsecurity=False).hexdigest()
    return f"{PREFIX}{digest[:8]}-"


def follow_up_id(repo: str, pr: int, kind: TriggerKind, id: int) -> str:
    """The task id of the follow-up that trigger ``kind``/``id`` makes: the same however
    often the trigger is seen or delivered, distinct for distinct triggers."""
    if isinstance(id, bool) or not isinstance(id, int) or id < 1:
        raise ValueError(f"a trigger id is a positive integer, not {id!r}")
    return f"{pull_prefix(repo, pr)}{LETTERS[kind]}{id}"


def command_in(body: str, command: str) -> tuple[bool, str | None]:
    """Whether ``body`` carries ``command`` at the start of a line (a quoted line, ``> ...``,
    does not count), and the specialty named right after it, if any (lower case)."""
    pattern = rf"^[ \t]*{re.escape(command)}(?:[ \t]+(\S+))?[ \t]*(?:$|[ \t])"
    found = re.search(pattern, body, re.IGNORECASE | re.MULTILINE)
    if found is None:
        return False, None
    return True, found.group(1).lower() if found.group(1) else None


def opening_task(pull: Pull) -> str | None:
    """The id of the task whose agent opened ``pull`` (its branch ``cluster/<id>``)."""
    if not pull.head_branch.startswith(BRANCH_PREFIX):
        return None
    tid = pull.head_branch[len(BRANCH_PREFIX):]
    return tid if is_safe_id(tid) else None


def spec_of(snap: Snapshot, key: str) -> TaskSpec | None:
    view = snap.tasks.get(key)
    return view.spec if view is not None else snap.archived_spec(key)


@dataclass(frozen=True)
class _Link:
    """The last round of a pull request's chain: its id, round and spec, and whether done."""

    id: str
    round: int
    spec: TaskSpec
    finished: bool


def _last_round(snap: Snapshot, prefix: str) -> _Link | None:
    last: _Link | None = None
    for key in sorted(set(snap.tasks) | set(snap.archived)):
        spec = spec_of(snap, key) if key.startswith(prefix) else None
        if spec is None or spec.follow_up is None:
            continue
        if last is None or spec.follow_up.round > last.round:
            last = _Link(key, spec.follow_up.round, spec, snap.result(key) is not None)
    return last


def plan_follow_ups(items: Iterable[tuple[Trigger, Pull]], snap: Snapshot,
                    policy: FollowUpPolicy, access: Access) -> list[Plan]:
    """One plan per trigger: oldest first per pull request (ties by forge id), each new one
    chained to the one before (its ``of``, one round on): triggers seen in one pass run in
    order."""
    ordered = sorted(items, key=lambda it: (it[1].repo.lower(), it[1].number,
                                            it[0].created_at, it[0].id, it[0].kind))
    chains: dict[str, _Link | None] = {}
    plans: list[Plan] = []
    for trigger, pull in ordered:
        got = _plan_one(trigger, pull, snap, policy, access, chains)
        plans.append(got)
    return plans


def plan_follow_up(trigger: Trigger, pull: Pull, snap: Snapshot, policy: FollowUpPolicy,
                   access: Access) -> Plan:
    """The plan of one trigger alone (see :func:`plan_follow_ups`)."""
    return plan_follow_ups([(trigger, pull)], snap, policy, access)[0]


def _plan_one(trigger: Trigger, pull: Pull, snap: Snapshot, policy: FollowUpPolicy,
              access: Access, chains: dict[str, _Link | None]) -> Plan:
    where = f"{pull.repo}#{pull.number}: {trigger.kind} {trigger.id}"
    opener = opening_task(pull)
    if opener is None:
        return f"{where}: not an agent's pull request (branch {pull.head_branch!r})"
    if policy.bot_login and pull.author.lower() != policy.bot_login.lower():
        return (f"{where}: opened by {pull.author}, not by the agents ({policy.bot_login}): "
                "not an agent's pull request")
    opening = spec_of(snap, opener)
    if opening is None:
        return f"{where}: branch {pull.head_branch!r} names no task this state repo knows"
    tid = follow_up_id(pull.repo, pull.number, trigger.kind, trigger.id)
    if snap.known(tid):
        return Known(tid)
    if pull.state != "open":
        return f"{where}: the pull request is {pull.state}"
    if trigger.kind in ("check_run", "status"):
        named = None
    else:
        if policy.is_bot(trigger):
            return f"{where}: the agents' own comment"
        carries, named = command_in(trigger.body, policy.command)
        if not carries and trigger.kind != "review":
            return f"{where}: does not carry {policy.command!r}"
    known = snap.settings.known_specialties
    if named is not None and named not in known:
        return (f"{where}: names specialty {named!r}, which this state repo does not know "
                f"(known: {', '.join(sorted(known))})")
    if trigger.kind not in ("check_run", "status") and not (
            policy.allowed(trigger.author) or access(trigger.author, pull.repo)):
        return Refused(tid, trigger, pull)
    prefix = pull_prefix(pull.repo, pull.number)
    if prefix not in chains:
        chains[prefix] = _last_round(snap, prefix)
    last = chains[prefix]
    source = last.spec if last is not None else opening
    document = _document(tid, trigger, pull, opener, opening, source, last, named)
    data = yamlio.dump(document).encode()
    try:
        spec = parse_task(f"tasks/{tid}.yaml", data, known)
    except ValidationError as exc:
        return f"{where}: " + "; ".join(exc.problems)
    assert spec.follow_up is not None
    chains[prefix] = _Link(tid, spec.follow_up.round, spec, finished=False)
    return Planned(tid, data)


def _document(tid: str, trigger: Trigger, pull: Pull, opener: str, opening: TaskSpec,
              source: TaskSpec, last: _Link | None, named: str | None) -> dict[str, Any]:
    number = last.round + 1 if last is not None else 1
    of = last.id if last is not None else opener
    depends = [opener] + ([of] if last is not None and not last.finished else [])
    who = f"by {trigger.author}" if trigger.author else "failed"
    title = f"Round {number} on {pull.repo}#{pull.number}: {trigger.kind} {who}"
    head = pull.head_sha if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", pull.head_sha) else None
    document: dict[str, Any] = {
        "id": tid, "title": " ".join(title.split())[:MAX_TITLE],
        "specialty": named or source.specialty, "priority": "high", "repo": source.repo,
        "base": pull.base, "prompt": f"Original task {opener}: {opening.title}\n\n"
                                     f"{opening.prompt}",
        "executor": source.executor.model_dump(mode="json", exclude_none=True),
        "timeout": source.timeout, "max_attempts": source.max_attempts,
        "budget": source.budget.model_dump(mode="json", exclude_none=True),
        "depends_on": depends,
        "labels": list(dict.fromkeys([*source.labels, LABEL])),
        "follow_up": {"pull_request": pull.number, "of": of, "round": number,
                      "branch": pull.head_branch, "head": head,
                      "trigger": {"kind": trigger.kind, "id": trigger.id}},
    }
    if source.verify is not None:
        document["verify"] = source.verify
    if source.max_rounds is not None:
        document["max_rounds"] = source.max_rounds
    if head is None:
        del document["follow_up"]["head"]
    return document

