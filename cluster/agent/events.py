"""Agent events: one log line each (human or JSON), and a JSON-lines file tests can read."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.secret import Secret, mask

log = logging.getLogger("cluster.agent")


class EventLog:
    def __init__(self, agent: str, path: Path | None,
                 secrets: Sequence[Secret | str] = ()) -> None:
        self.agent = agent
        self.path = path
        self.secrets = secrets
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, event: str, task: str | None = None, **fields: Any) -> None:
        record: dict[str, Any] = {"ts": round(time.time(), 4), "agent": self.agent, "event": event}
        if task is not None:
            record["task"] = task
        record.update(fields)
        line = mask(json.dumps(record, default=str), self.secrets)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        log.info(mask(f"agent={self.agent} task={task or '-'} {event} {extra}".rstrip(),
                      self.secrets))
        if self.path is not None:
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {"ts": round(record.created, 4), "level": record.levelname,
             "logger": record.name, "message": record.getMessage()}
        )


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    plain = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else plain)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
