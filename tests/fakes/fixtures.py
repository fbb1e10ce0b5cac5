"""Pytest fixtures serving the fake Anthropic and GitHub APIs, one server per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.github_api import FakeGitHub


@pytest.fixture
def anthropic_api() -> Iterator[FakeAnthropic]:
    """A running fake Messages API; point the SDK at ``anthropic_api.url``."""
    with FakeAnthropic() as api:
        yield api
        assert not api.errors, "the fake Anthropic API crashed:\n" + "\n".join(api.errors)


@pytest.fixture
def github_api() -> Iterator[FakeGitHub]:
    """A running fake GitHub API; point PyGithub at ``github_api.api_url``."""
    with FakeGitHub() as api:
        yield api
        assert not api.errors, "the fake GitHub API crashed:\n" + "\n".join(api.errors)


def require_claude_cli() -> None:
    """Skip without the real Claude Code CLI, or fail under CI, where setup.sh installs it."""
    if shutil.which("claude") is None:
        if os.environ.get("CI"):
            pytest.fail("the Claude Code CLI is not installed: setup.sh installs it")
        pytest.skip("the Claude Code CLI is not installed (setup.sh installs it)")


@contextmanager
def anthropic_upstream(api_key: str) -> Iterator[FakeAnthropic]:
    """The Messages API stand-in taking only ``api_key``: the upstream of a broker that holds
    it. Fails the test if the stand-in crashed."""
    with FakeAnthropic(api_key=api_key) as stand_in:
        yield stand_in
        assert not stand_in.errors, "the stand-in crashed:\n" + "\n".join(stand_in.errors)
