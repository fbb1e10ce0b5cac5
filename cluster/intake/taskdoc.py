"""The task a labelled issue becomes: its id, specialty and YAML, checked by the validator;
and :class:`Planned`, what every intake planner hands the filer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cluster.errors import ValidationError
from cluster.intake.issues import Issue
from cluster.state import yamlio
from cluster.state.schema import parse_task

SPECIALTY_LABEL = "specialty:"
MAX_ID = 64


@dataclass(frozen=True)
class Policy:
    """Which issues become tasks (``label``) and how their specialty is chosen."""

    label: str
    specialty: str | None = None
    specialty_from_label: bool = False


@dataclass(frozen=True)
class Planned:
    """A task to file: its id and its YAML, already checked by the validator."""

    id: str
    data: bytes


@dataclass(frozen=True)
class Known:
    """A trigger or issue whose task the state repo already has: nothing to file."""

    id: str


def task_id(repo: str, number: int) -> str:
    """``gh-<name>-<number>`` within the id charset (lower case, a-z0-9_-, at most 64)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", repo.rsplit("/", 1)[-1].lower()).strip("-_")
    name = re.sub(r"-{2,}", "-", name)
    suffix = f"-{number}"
    room = MAX_ID - len("gh-") - len(suffix)
    name = name[:room].rstrip("-_")
    return f"gh-{name}{suffix}" if name else f"gh{suffix}"


def specialty_for(issue: Issue, policy: Policy) -> str | None:
    if policy.specialty_from_label:
        for label in issue.labels:
            if label.lower().startswith(SPECIALTY_LABEL):
                return label[len(SPECIALTY_LABEL) :].strip().lower()
    return policy.specialty


def plan(issue: Issue, policy: Policy, known: frozenset[str]) -> Planned | str:
    """The task for ``issue``, or why it cannot be one (a line for people)."""
    specialty = specialty_for(issue, policy)
    where = f"{issue.repo}#{issue.number}"
    if specialty is None:
        return f"{where}: no '{SPECIALTY_LABEL}<x>' label and no --specialty"
    title = " ".join(issue.title.split())[:200] or where
    tid = task_id(issue.repo, issue.number)
    document = {
        "id": tid, "title": title, "specialty": specialty, "repo": issue.repo,
        "issue": issue.number, "prompt": issue.url, "executor": {"kind": "claude"},
        "labels": list(issue.labels),
    }
    data = yamlio.dump(document).encode()
    try:
        parse_task(f"tasks/{tid}.yaml", data, known)
    except ValidationError as exc:
        return f"{where}: " + "; ".join(exc.problems)
    return Planned(tid, data)
