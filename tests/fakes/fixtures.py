"""Pytest fixtures serving the fake Anthropic and GitHub APIs, one server per test."""

from __future__ import annotations

from collections.abc import Iterator

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
