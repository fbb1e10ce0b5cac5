"""SSH to hosts with verified host keys: the only package that imports Fabric or paramiko."""

from __future__ import annotations

from cluster.transport.ssh import connect, get_bytes, put_bytes, put_file, run

__all__ = ["connect", "get_bytes", "put_bytes", "put_file", "run"]
