"""What people may write on main, with the messages both hooks print (one line per problem)."""

from __future__ import annotations

from typing import Literal

from cluster.errors import ValidationError
from cluster.state.ids import ARCHIVE_DIR, TASKS_DIR
from cluster.state.schema import parse_task
from cluster.state.settings import SETTINGS_FILE, RepoSettings, parse_settings
from cluster.state.snapshot import IGNORED_IN_TASKS

README_FILE = "README.md"
PathKind = Literal["settings", "readme", "task", "task-extra", "tasks-subdir", "archive", "other"]

OUTSIDE = (
    "outside tasks/, cluster.yaml and README.md: people write only those on main "
    "(archive/ is written by fold commits)"
)
ARCHIVE_BY_FOLD = (
    "archive/ is written only by fold commits (moving a finished task whose claim ref "
    "the same push deletes)"
)
SUBDIR = "tasks/ holds task files (<id>.yaml) only, not directories"


def classify(path: str) -> PathKind:
    if path == SETTINGS_FILE:
        return "settings"
    if path == README_FILE:
        return "readme"
    if path.startswith(f"{ARCHIVE_DIR}/"):
        return "archive"
    if path.startswith(f"{TASKS_DIR}/"):
        name = path[len(TASKS_DIR) + 1 :]
        if "/" in name:
            return "tasks-subdir"
        return "task-extra" if name in IGNORED_IN_TASKS else "task"
    return "other"


def task_problems(path: str, data: bytes, known: frozenset[str]) -> list[str]:
    """``path: problem`` lines from the agents' own validator; empty when the file is valid."""
    try:
        parse_task(path, data, known)
    except ValidationError as exc:
        return [f"{exc.where}: {problem}" for problem in exc.problems]  # where: one line
    return []


def settings_of(data: bytes | None) -> tuple[RepoSettings, list[str]]:
    """The settings in ``data`` (defaults when broken) and the problems found."""
    try:
        return parse_settings(data), []
    except ValidationError as exc:
        return RepoSettings(), [f"{SETTINGS_FILE}: {problem}" for problem in exc.problems]


def people_change_problems(
    path: str, new: bytes | None, known: frozenset[str]
) -> list[str]:
    """Problems of one changed file in a commit by a person (``new`` None: a deletion)."""
    kind = classify(path)
    if kind == "other":
        return [f"{path}: {OUTSIDE}"]
    if kind == "archive":
        return [f"{path}: {ARCHIVE_BY_FOLD}"]
    if kind == "tasks-subdir":
        return [] if new is None else [f"{path}: {SUBDIR}"]
    if new is None:
        return []
    if kind == "task":
        return task_problems(path, new, known)
    if kind == "settings":
        return settings_of(new)[1]
    return []
