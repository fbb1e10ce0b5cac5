"""`invoke demo --hosts N`, end to end on real test hosts (without the install step)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.demo_hosts import run_demo_hosts


@pytest.mark.integration
def test_demo_through_real_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("GIT_SSH_COMMAND", "ssh")  # run_demo_hosts sets its own; restored after
    assert run_demo_hosts(tmp_path / "demo", count=2) == 0
