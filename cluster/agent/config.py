"""The agent's settings, layered by cluster.layers: defaults < agent.yaml < CLUSTER_AGENT_* < flags.

The model itself (AgentConfig, SandboxConfig) is plain data in cluster.agent_schema, shared with
the units and deploy; it is imported here under the names the agent's modules use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster import layers
from cluster.agent_schema import AgentConfig, SandboxConfig

__all__ = ["PLANE", "AgentConfig", "SandboxConfig", "load_agent_config", "read_config_file"]

PLANE = layers.Plane("agent", AgentConfig)


def read_config_file(path: Path) -> dict[str, Any]:
    """An agent.yaml as a mapping, read strictly; ConfigError otherwise."""
    return layers.read_file(path, PLANE.name)


def load_agent_config(
    path: Path | None, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """The file (``path``, else ``CLUSTER_AGENT_FILE``'s), the environment and the flags
    (None means 'not given'), layered as every plane's settings are."""
    return layers.load(PLANE, flags, environ, path)
