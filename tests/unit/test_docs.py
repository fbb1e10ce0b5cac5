"""Docs stay true to the code: every configurable key is documented, every doc link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from cluster.agent.config import AgentConfig
from cluster.backup.settings import BackupSettings
from cluster.deploy.settings import DeploySettings
from cluster.inventory.schema import DefaultsData, Entry
from cluster.state.schema import TaskSpec
from cluster.state.settings import RepoSettings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("model", [AgentConfig, TaskSpec, RepoSettings, DeploySettings,
                                   BackupSettings, DefaultsData, Entry])
def test_every_key_is_in_the_configuration_reference(model: type[BaseModel]) -> None:
    missing = [name for name in model.model_fields if f"| `{name}` |" not in REFERENCE]
    assert missing == [], f"{model.__name__} keys missing from docs/configuration.md"


def test_relative_links_in_docs_resolve() -> None:
    broken = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []
