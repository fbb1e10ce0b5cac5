"""How the control host reaches hosts: SSH with verified host keys (the only package that
imports Fabric or paramiko, and that builds OpenSSH command lines: ``openssh``) and the docker
engine (``docker``, the only module that imports the docker SDK)."""

from __future__ import annotations

from cluster.transport.ssh import connect, get_bytes, put_bytes, run

__all__ = ["connect", "get_bytes", "put_bytes", "run"]
