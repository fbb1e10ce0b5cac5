"""The records agents write on claim refs and heartbeat refs, and their YAML form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

from cluster.state import yamlio
from cluster.state.statuses import TERMINAL, AgentState, ReleaseStatus, Terminal


def stamp(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, as every record writes times."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def unstamp(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, str):
        raise ValueError(f"expected a time, found {value!r}")
    return datetime.fromisoformat(value).timestamp()


_TIME_FIELDS = frozenset(
    {
        "claimed_at", "renewed_at", "expires_at", "not_before", "started_at", "finished_at",
        "last_seen", "paused_until",
    }
)


# Fields added after records were first written, left out while at their defaults: a record
# that has nothing of them is byte for byte what it always was (readers default them).
_LATER: dict[str, Any] = {"round": None, "replied_to": (), "beats_hour": 0}


class Record:
    """Shared YAML encoding: times as RFC 3339 strings, ``kind`` first."""

    KIND: ClassVar[str]
    FILE: ClassVar[str]

    def to_yaml(self) -> bytes:
        body: dict[str, Any] = {"kind": self.KIND}
        shared = {f.name for f in dataclasses.fields(Outcome)}
        items = dataclasses.fields(self)  # type: ignore[arg-type]
        # The record's own fields first (task, status...), then the attempt's outcome.
        for item in sorted(items, key=lambda f: f.name in shared):
            value = getattr(self, item.name)
            if item.name in _TIME_FIELDS and isinstance(value, float):
                value = stamp(value)
            if item.name in _LATER and value == _LATER[item.name]:
                continue
            if isinstance(value, tuple):
                value = list(value)
            body[item.name] = value
        return yamlio.dump(body).encode()

    @classmethod
    def _fields_from(cls, body: dict[str, Any]) -> dict[str, Any]:
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name == "kind" or name not in names:
                continue
            if name in _TIME_FIELDS and value is not None:
                value = unstamp(value)
            if isinstance(value, list):
                value = tuple(value)
            values[name] = value
        return values


# An agent is online while its last heartbeat is younger than this many heartbeat intervals
# (status, health and the agent's own healthcheck judge by it).
ONLINE_BEATS = 3


@dataclass(frozen=True)
class Claim(Record):
    KIND: ClassVar[str] = "claim"
    FILE: ClassVar[str] = "claim.yaml"

    task: str
    agent: str
    host: str
    pid: int
    attempt: int
    claimed_at: float
    renewed_at: float
    expires_at: float
    lease_seconds: float
    task_blob: str
    takeover_of: str | None = None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one attempt produced, the one value from executor to record: an executor reports
    its part (cluster.agent.executors.base.ExecutionOutcome is an Outcome with the executor's
    verdict), the task runner completes it with ``dataclasses.replace`` (masked summary, branch,
    head, pull request, times, log), and the release or result it ends in carries it
    (:meth:`carrying`)."""

    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    summary: str = ""
    branch: str | None = None
    head: str | None = None
    pull_request: str | None = None
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    log: str | None = None
    # A follow-up's round on its pull request (None: not a follow-up), and the review
    # comments whose threads it answered.
    round: int | None = None
    replied_to: tuple[int, ...] = ()

    def carrying(self, outcome: Outcome) -> Self:
        """This release or result with ``outcome``'s fields: only :class:`Outcome`'s own, so
        what a subclass adds (an executor's verdict) never reaches a record."""
        return dataclasses.replace(
            self, **{f.name: getattr(outcome, f.name) for f in dataclasses.fields(Outcome)})


@dataclass(frozen=True, kw_only=True)
class Release(Outcome, Record):
    KIND: ClassVar[str] = "release"
    FILE: ClassVar[str] = "release.yaml"

    task: str
    agent: str
    attempt: int
    status: ReleaseStatus
    counted: bool
    reason: str
    not_before: float


@dataclass(frozen=True, kw_only=True)
class Result(Outcome, Record):
    KIND: ClassVar[str] = "result"
    FILE: ClassVar[str] = "result.yaml"

    task: str
    status: Terminal
    attempt: int
    agent: str
    reason: str = ""


@dataclass(frozen=True)
class Heartbeat(Record):
    KIND: ClassVar[str] = "agent"
    FILE: ClassVar[str] = "agent.yaml"

    id: str
    host: str
    pid: int
    version: str
    specialties: tuple[str, ...]
    max_tasks: int
    holding: tuple[str, ...]
    state: AgentState
    started_at: float
    last_seen: float
    heartbeat_seconds: float
    paused_until: float | None = None
    metrics_port: int | None = None
    sandbox: Literal["bwrap", "off"] = "bwrap"  # off: its task code runs unsealed
    # Fingerprints (cluster.agent.credentials.fingerprint) of the model credentials it uses.
    credentials: tuple[str, ...] = ()
    paused_for: str | None = None  # the credential whose usage window the pause waits out
    paused_by: str | None = None  # the agent that met the limit (itself, or one sharing it)
    reason: str | None = None  # why it is paused or blocked, one line
    # Pushes of its own that leave no commit of their own behind (heartbeats and renewals,
    # both replaced in place) in the hour before last_seen: what health adds to the commits
    # it counts to tell a hosted repo's push rate.
    beats_hour: int = 0

    def online(self, now: float) -> bool:
        return (self.state != "stopped"
                and now - self.last_seen < ONLINE_BEATS * self.heartbeat_seconds)


ClaimRecord = Claim | Release | Result
_BY_FILE: dict[str, type[Claim] | type[Release] | type[Result]] = {
    "claim.yaml": Claim,
    "release.yaml": Release,
    "result.yaml": Result,
}


def load_claim_record(name: str, data: bytes) -> ClaimRecord:
    kind = _BY_FILE.get(name)
    if kind is None:
        raise ValueError(f"unexpected file {name!r} on a claim ref")
    return kind(**kind._fields_from(_load_mapping(data)))


def load_result(data: bytes) -> Result:
    return Result(**Result._fields_from(_load_mapping(data)))


def load_heartbeat(data: bytes) -> Heartbeat:
    return Heartbeat(**Heartbeat._fields_from(_load_mapping(data)))


def _load_mapping(data: bytes) -> dict[str, Any]:
    body = yamlio.load(data)
    if not isinstance(body, dict):
        raise ValueError("record is not a mapping")
    return body


__all__ = [
    "ONLINE_BEATS",
    "TERMINAL",  # re-exported: cluster.state.statuses holds the vocabulary
    "Claim",
    "ClaimRecord",
    "Heartbeat",
    "Outcome",
    "Release",
    "Result",
    "load_claim_record",
    "load_heartbeat",
    "load_result",
    "stamp",
    "unstamp",
]
