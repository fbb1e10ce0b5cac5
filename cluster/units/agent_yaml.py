"""The agent's settings file (/etc/claude-cluster/agent.yaml) from an inventory host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.agent_schema import AgentConfig
from cluster.inventory.model import HostSpec
from cluster.units import layout

HEADER = "# Written by claude-cluster deploy from inventory/; local edits are overwritten.\n"


def agent_config(host: HostSpec, **overrides: Any) -> AgentConfig:
    """The AgentConfig a host's agent runs with; ``overrides`` sets any other AgentConfig key.

    The same paths serve systemd and containers (the container mounts them at the same place).
    """
    settings: dict[str, Any] = {
        "state": host.state_repo,
        "id": host.name,
        "specialties": host.specialties,
        "max_tasks": host.max_tasks,
        "workdir": Path(str(layout.WORKSPACE)),
        "events_path": Path(str(layout.EVENTS_FILE)),
        "metrics_port": host.metrics_port,
        **overrides,
    }
    return AgentConfig.model_validate(settings)


def render_agent_config(config: AgentConfig) -> str:
    """YAML that ``load_agent_config`` reads back to an equal AgentConfig (None keys left out)."""
    body = config.model_dump(mode="json", exclude_none=True)
    return HEADER + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
