"""Shared fixtures: agent processes are always stopped, whatever a test did to them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import AgentProcess

pytest_plugins = ["tests.fakes.fixtures"]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Any]:
    started: list[AgentProcess] = []

    def start(state: Path | str, agent_id: str, **kwargs: Any) -> AgentProcess:
        proc = AgentProcess(state, agent_id, tmp_path, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
