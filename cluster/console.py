"""How wide output is and whether progress is drawn live: decided here, once.

On a terminal, output is as wide as the terminal (or ``COLUMNS``, which rich reads): tables
shrink to fit it and fold long cells.  Off one (a pipe, a file, cron's log), or with ``wide``,
each renderable prints at its natural width, never narrower than the console (80, or
``COLUMNS``), so no id or cell is cut.  Progress is a rich bar on a terminal and plain
``[i/n] what ... ok (1.2s)`` lines off one.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

UNBOUNDED = 1_000_000  # the room a renderable is measured in to find its natural width


def is_live(console: Console) -> bool:
    """Whether progress is redrawn in place (a terminal) or printed as plain lines."""
    return console.is_terminal


def fitted_width(console: Console, renderable: RenderableType, *, wide: bool = False) -> int:
    """The width ``renderable`` prints at: the terminal's on one (unless ``wide``); else its
    natural width, at least the console's."""
    if is_live(console) and not wide:
        return console.width
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), renderable)
    return max(natural.maximum, console.width)


def print_fitted(console: Console, renderables: Iterable[RenderableType], *,
                 wide: bool = False) -> None:  # fmt: skip
    """Print each renderable (a str is console markup) at its :func:`fitted_width`."""
    for item in renderables:
        renderable = console.render_str(item) if isinstance(item, str) else item
        width = fitted_width(console, renderable, wide=wide)
        if width <= console.width:
            console.print(renderable)
        else:
            console.print(_AtWidth(renderable, width), crop=False)


class _AtWidth:
    """``renderable`` laid out in ``width`` columns whatever the console's width."""

    def __init__(self, renderable: RenderableType, width: int) -> None:
        self.renderable, self.width = renderable, width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from console.render(self.renderable, options.update_width(self.width))


class StepProgress:
    """One operation's progress: ``total`` steps run one after another (:meth:`step`), or
    ``rows`` (hosts) worked on at once, each drawn on its own line, counted as they
    :meth:`finish`.

    On a terminal a rich bar (and a line per row) is redrawn in place and removed at the end;
    off one, each step or row that ends prints ``[i/n] what ... ok (1.2s)``. Without a
    console nothing is printed. Thread-safe; use it as a context manager.
    """

    def __init__(self, console: Console | None, title: str, total: int | None = None, *,
                 rows: Sequence[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.console = console or Console(quiet=True, force_terminal=False)  # says nothing
        self.live = is_live(self.console)
        self.title = title
        self.total = len(rows) if total is None and rows is not None else total
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        self._progress = Progress(*columns, console=self.console, transient=True,
                                  disable=not self.live)  # fmt: skip
        self._lock = threading.Lock()
        self._clock = clock
        self._opened = clock()
        self._bar = self._progress.add_task(title, total=self.total)
        self._rows = {row: self._progress.add_task(f"  {row}: waiting", total=None)
                      for row in rows or ()}  # fmt: skip
        self._started: dict[str, float] = {}
        self._done: set[str] = set()
        self._count = 0

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:  # fmt: skip
        self._progress.stop()

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Time the block as the next step; it ends ``ok``, or ``failed`` if it raised."""
        started = self._clock()
        with self._lock:
            self._progress.update(self._bar, description=f"{self.title}: {what}")
        try:
            yield
        except BaseException:
            self._end(what, "failed", started)
            raise
        self._end(what, "ok", started)

    def show(self, row: str, what: str) -> None:
        """Say on ``row``'s line what it is doing (a row not in the run is ignored)."""
        with self._lock:
            if row in self._rows:
                self._started.setdefault(row, self._clock())
                self._progress.update(self._rows[row], description=f"  {row}: {what}")

    def finish(self, row: str, status: str) -> None:
        """``row`` ended with ``status``; it is counted (and its plain line printed) once."""
        self.show(row, status)
        with self._lock:
            first = row in self._rows and row not in self._done
            if first:
                self._done.add(row)
        if first:
            self._end(row, status, self._started.get(row, self._opened))

    def lines(self) -> dict[str, str]:
        """What each row's line says now, and the bar as ``done/total`` under ``""``."""
        with self._lock:
            shown = {task.id: task for task in self._progress.tasks}
        bar = shown[self._bar]
        total = "?" if bar.total is None else f"{bar.total:.0f}"
        rows = {row: shown[task].description.strip() for row, task in self._rows.items()}
        return {"": f"{bar.completed:.0f}/{total}", **rows}

    def _end(self, what: str, status: str, started: float) -> None:
        seconds = self._clock() - started
        with self._lock:
            self._count += 1
            self._progress.advance(self._bar)
            if not self.live:
                total = "?" if self.total is None else str(self.total)
                self.console.print(f"[{self._count}/{total}] {what} ... {status} ({seconds:.1f}s)",
                                   markup=False, highlight=False, soft_wrap=True)  # fmt: skip
