"""Wake-ups: watchdog events on a local remote's refs, a fallback interval for everything."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

# Only main brings new work. Claim refs change with every claim, renewal and result: waking
# every agent for each would cost O(agents x events); releases and expiries are timed instead.
_RELEVANT = ("/refs/heads/",)


class _Handler(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if not path or path.endswith(".lock"):
                continue
            if path.endswith("packed-refs") or any(part in path for part in _RELEVANT):
                self._event.set()
                return


class Waker:
    """``wait`` returns early when the remote may have changed; events are only hints."""

    def __init__(self, local_repo: Path | None) -> None:
        self._event = threading.Event()
        self._repo = local_repo
        self._observer: Any = None  # watchdog's Observer is a platform-chosen class

    def start(self) -> None:
        if self._repo is None or self._observer is not None:
            return
        heads = self._repo / "refs" / "heads"
        if not heads.is_dir():
            return
        observer = Observer()
        handler = _Handler(self._event)
        # Not recursive over refs/: claim refs churn with every claim and renewal, and a
        # recursive watch there overflows the inotify queue under load.
        observer.schedule(handler, str(heads), recursive=False)
        observer.schedule(handler, str(self._repo), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def restart(self) -> None:
        """After the remote went away and came back: watch the directory that is there now."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def poke(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        woke = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return woke
