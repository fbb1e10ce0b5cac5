"""Recently seen webhook delivery ids: a bounded set kept in a file so restarts remember."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")


class DeliveryLog:
    """The last ``limit`` delivery ids, appended one a line; rewritten (atomically: temp file,
    fsync, rename) once the file holds twice as many, so it never grows past that."""

    def __init__(self, path: Path, limit: int = 10_000) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        lines = path.read_text().split() if path.exists() else []
        self._ids: dict[str, None] = dict.fromkeys(lines[-limit:])
        self._lines = len(lines)

    def __contains__(self, delivery: object) -> bool:
        with self._lock:
            return delivery in self._ids

    def add(self, delivery: str) -> None:
        if not DELIVERY_ID.match(delivery):
            raise ValueError(f"not a delivery id: {delivery!r}")
        with self._lock:
            if delivery in self._ids:
                return
            self._ids[delivery] = None
            while len(self._ids) > self.limit:
                del self._ids[next(iter(self._ids))]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.write(delivery + "\n")
                out.flush()
                os.fsync(out.fileno())
            self._lines += 1
            if self._lines > 2 * self.limit:
                self._compact()

    def _compact(self) -> None:
        temp = self.path.with_name(f".{self.path.name}.tmp")
        with temp.open("w") as out:
            out.write("".join(f"{item}\n" for item in self._ids))
            out.flush()
            os.fsync(out.fileno())
        temp.replace(self.path)
        self._lines = len(self._ids)
