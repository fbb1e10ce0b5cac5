"""Claude Code Cluster: a fleet of Claude coding agents coordinated through git alone."""

from __future__ import annotations

__version__ = "0.1.0"
