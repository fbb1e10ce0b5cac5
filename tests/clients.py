"""Clients of a state repo for tests: ``state_client`` (closes itself at the end of ``with``)
and ``result_of``, a task's result as a reader sees it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from cluster.state.client import Identity, StateClient
from cluster.state.records import Result


class ClosingStateClient(StateClient):
    """A StateClient that is also a context manager: ``with`` closes it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def state_client(state: str | Path, tmp_path: Path, name: str = "reader", *,
                 work: str | None = None) -> ClosingStateClient:
    """``name``'s client of the state repo ``state`` (a path or URL), its mirror in
    ``tmp_path / work`` (``work`` defaults to ``name``). Close it, or use it in ``with``."""
    return ClosingStateClient(str(state), tmp_path / (work or name), Identity(name))


def result_of(state: str | Path, tmp_path: Path, key: str) -> Result:
    """The result of ``key`` as a reader (its mirror in ``tmp_path / "reader"``) sees it."""
    with state_client(state, tmp_path) as reader:
        result = reader.snapshot().result(key)
    assert result is not None, f"{key} has no result"
    return result
