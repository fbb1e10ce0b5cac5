"""Safe ids, the claim-ref keys derived from task file names, and archive shards."""

from __future__ import annotations

import hashlib
import re

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ID_RULE = "1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
TASKS_DIR = "tasks"
ARCHIVE_DIR = "archive"
TASK_SUFFIX = ".yaml"


# The state repo's refs: the task list, one claim per task in flight, one heartbeat per agent.
MAIN = "refs/heads/main"
CLAIMS = "refs/claims/"
AGENTS = "refs/agents/"


def is_safe_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def key_for_name(name: str) -> str:
    """The claim-ref key of the entry ``tasks/<name>``.

    A well-named file (``<id>.yaml``) is keyed by its id; anything else by a hash of its name,
    prefixed with ``bad.`` (ids never contain dots, so the two spaces never meet).
    """
    if name.endswith(TASK_SUFFIX) and is_safe_id(name[: -len(TASK_SUFFIX)]):
        return name[: -len(TASK_SUFFIX)]
    digest = hashlib.sha1(f"{TASKS_DIR}/{name}".encode(), usedforsecurity=False).hexdigest()
    return f"bad.{digest[:16]}"


def shard(key: str) -> str:
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:2]


def archive_path(key: str) -> str:
    return f"{ARCHIVE_DIR}/{shard(key)}/{key}"


def claim_ref(key: str) -> str:
    return f"{CLAIMS}{key}"


def agent_ref(agent_id: str) -> str:
    return f"{AGENTS}{agent_id}"
