"""The task schema, and the one validator that submitters, hooks and agents all use."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticError

from cluster.errors import ValidationError
from cluster.state import yamlio
from cluster.state.ids import ID_RULE, TASK_SUFFIX, is_safe_id

MAX_TASK_BYTES = 64 * 1024
DEFAULT_SPECIALTIES = ("backend", "frontend", "testing", "devops", "docs", "security", "data")


class Priority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return ("low", "medium", "high", "critical").index(self.value)


class ExecutorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["claude", "claude-code", "command"] = "claude"
    command: str | None = None
    model: str | None = None
    args: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _command_matches_kind(self) -> ExecutorSpec:
        if self.kind == "command" and not (self.command and self.command.strip()):
            raise ValueError("kind 'command' needs a non-empty 'command'")
        if self.kind != "command" and self.command is not None:
            raise ValueError(f"'command' is only for kind 'command', not {self.kind!r}")
        if self.kind != "claude-code" and self.args:
            raise ValueError(f"'args' is only for kind 'claude-code', not {self.kind!r}")
        if self.kind == "command" and self.model is not None:
            raise ValueError("'model' is for the claude executors, not kind 'command'")
        return self


class BudgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_usd: float | None = Field(default=None, gt=0, strict=True)


def _safe_id(value: str) -> str:
    if not is_safe_id(value):
        raise ValueError(f"unsafe id {value!r}: expected {ID_RULE}")
    return value


SafeId = Annotated[str, AfterValidator(_safe_id)]  # a task id: a file name, ref and branch part

# What started a follow-up round on a pull request (docs/state-protocol.md, "Follow-ups"): a
# review that requests changes, a comment on the pull request (issue comment) or on a line of
# its diff (review comment) that addresses the agents, a failed check run or commit status.
TriggerKind = Literal["review", "comment", "review_comment", "check_run", "status"]
TRIGGER_KINDS: tuple[TriggerKind, ...] = get_args(TriggerKind)
BRANCH_PREFIX = "cluster/"
MAX_ROUNDS = 20


class TriggerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TriggerKind
    id: int = Field(ge=1, strict=True)  # the forge's id of the review, comment, check or status


class FollowUpSpec(BaseModel):
    """The pull request a task continues: it works on that pull request's branch (an agent's
    ``cluster/<id>`` branch), pushes there and answers on the pull request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pull_request: int = Field(ge=1, strict=True)
    of: SafeId  # the task this round continues: the one that opened it, or the previous round
    round: int = Field(ge=1, le=MAX_ROUNDS, strict=True)
    branch: str
    head: str | None = None  # the branch's head commit when the trigger was seen
    trigger: TriggerSpec

    @field_validator("branch")
    @classmethod
    def _agent_branch(cls, value: str) -> str:
        if not (value.startswith(BRANCH_PREFIX) and is_safe_id(value[len(BRANCH_PREFIX):])):
            raise ValueError(f"{value!r} is not an agent's branch ({BRANCH_PREFIX}<id>)")
        return value

    @field_validator("head")
    @classmethod
    def _commit_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", value):
            raise ValueError(f"{value!r} is not a full commit id")
        return value


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: SafeId
    title: str = Field(min_length=1, max_length=200)
    specialty: str
    priority: Priority = Priority.medium
    repo: str = Field(min_length=1)
    base: str = "main"
    issue: int | None = Field(default=None, ge=1, strict=True)
    prompt: str = ""
    executor: ExecutorSpec = ExecutorSpec()
    verify: str | None = None
    timeout: int = Field(default=1800, ge=1, le=86_400, strict=True)
    max_attempts: int = Field(default=3, ge=1, le=10, strict=True)
    budget: BudgetSpec = BudgetSpec()
    depends_on: tuple[SafeId, ...] = ()
    labels: tuple[str, ...] = ()
    follow_up: FollowUpSpec | None = None
    # Follow-up rounds a pull request gets at most (None: the agent's follow_up_max_rounds).
    max_rounds: int | None = Field(default=None, ge=1, le=MAX_ROUNDS, strict=True)



def _describe(error: Any, lines: dict[str, int]) -> str:
    loc = error["loc"]
    field = ".".join(str(part) for part in loc) or "(document)"
    line = lines.get(str(loc[0])) if loc else None
    where = f" (line {line})" if line else ""
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"field {field!r}: unknown field{where}"
    if kind == "missing":
        return f"field {field!r}: required field missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"field {field!r}: {message}{where}"


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with control characters escaped and cut to ``limit``: a reason is one line."""
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_task(
    path: str,
    data: bytes,
    specialties: frozenset[str] | None = None,
) -> TaskSpec:
    """Parse and validate one task file; raise ValidationError naming file, line, field and rule.

    This is the one judgement every reader shares (agents, ``task submit``, hooks, ``status``):
    whatever ``data`` holds, the answer is a TaskSpec or a ValidationError with one-line
    problems, never another exception.
    """
    try:
        return _parse(path, data, specialties)
    except ValidationError as exc:
        raise ValidationError(one_line(path), [one_line(p) for p in exc.problems]) from exc
    except Exception as exc:  # bad input is data: nothing else may escape
        problem = f"cannot read this file ({type(exc).__name__})"
        raise ValidationError(one_line(path), [problem]) from exc


def _parse(path: str, data: bytes, specialties: frozenset[str] | None) -> TaskSpec:
    known = specialties if specialties is not None else frozenset(DEFAULT_SPECIALTIES)
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(TASK_SUFFIX):
        raise ValidationError(path, [f"task files are named <id>{TASK_SUFFIX}"])
    stem = name[: -len(TASK_SUFFIX)]
    if not is_safe_id(stem):
        raise ValidationError(path, [f"unsafe file name {stem!r}: expected {ID_RULE}"])
    if len(data) > MAX_TASK_BYTES:
        raise ValidationError(path, [f"file is {len(data)} bytes, more than {MAX_TASK_BYTES}"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(path, [f"not UTF-8: invalid byte at offset {exc.start}"]) from exc
    try:
        document, lines = yamlio.load_strict(text)
    except yaml.YAMLError as exc:
        raise ValidationError(path, [yamlio.describe(exc)]) from exc
    if not isinstance(document, dict):
        found = type(document).__name__ if document is not None else "an empty document"
        raise ValidationError(path, [f"expected a mapping of fields, found {found}"])
    try:
        spec = TaskSpec.model_validate(document)
    except PydanticError as exc:
        raise ValidationError(path, [_describe(e, lines) for e in exc.errors()]) from exc
    problems = []
    if spec.id != stem:
        problems.append(f"field 'id': {spec.id!r} must equal the file name {stem!r}")
    if spec.specialty not in known:
        problems.append(
            f"field 'specialty': unknown specialty {spec.specialty!r}; "
            f"known: {', '.join(sorted(known))}"
        )
    if spec.id in spec.depends_on:
        problems.append("field 'depends_on': a task cannot depend on itself")
    if spec.follow_up is not None and spec.follow_up.of == spec.id:
        problems.append("field 'follow_up.of': a task cannot continue itself")
    if problems:
        raise ValidationError(path, problems)
    return spec
