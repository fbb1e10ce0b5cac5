"""Backup and maintenance settings, one typed object layered by cluster.layers: defaults < file
(named by ``CLUSTER_BACKUP_FILE``) < CLUSTER_BACKUP_* environment < flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cluster import layers
from cluster.errors import ConfigError


class BackupSettings(BaseModel):
    """What ``backup`` and ``maintain`` need; ``state`` may be a path or a git URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str | None = None  # default: the one state_repo every inventory host shares
    dest: Path = layers.WORK_DIR / "backups"
    keep_days: float = Field(default=30.0, ge=0)  # 0: no pruning by age
    keep: int = Field(default=0, ge=0)  # 0: no pruning by count
    inventory: Path | None = None  # copied into the backup (hosts, groups, defaults.yaml)
    config: layers.Listed[Path] = ()  # extra non-secret YAML config files (agent.yaml ...)
    tarball: bool = False  # one .tar.gz instead of a directory
    ssh_key: Path | None = None  # for an ssh:// state repo; default: the inventory's
    known_hosts: Path | None = None  # the state host's key; default: the inventory's
    connect_timeout: float = Field(default=10.0, gt=0)
    archive_days: float = Field(default=90.0, gt=0)  # maintain: results kept in archive/
    agent_days: float = Field(default=7.0, gt=0)  # maintain: heartbeats kept this long

    def state_url(self) -> str:
        """``state``, or the state repo all inventory hosts share; ConfigError when neither."""
        if self.state:
            return self.state
        if self.inventory is not None:
            from cluster.inventory import load_inventory

            urls = {host.state_repo for host in load_inventory(self.inventory).hosts}
            if len(urls) == 1:
                return urls.pop()
            raise ConfigError(
                f"{self.inventory}: hosts use {len(urls)} state repos: pass --state"
            )
        raise ConfigError("no state repo: pass --state PATH|URL (or --inventory DIR)")

    def ssh_access(self) -> tuple[Path, Path]:
        """The key and known_hosts for an ssh:// state repo: flags, else the inventory's."""
        key, known = self.ssh_key, self.known_hosts
        if (key is None or known is None) and self.inventory is not None:
            from cluster.inventory import load_inventory

            hosts = load_inventory(self.inventory).hosts
            keys = {h.ssh_key_file for h in hosts if h.ssh_key_file}
            knowns = {h.known_hosts_file for h in hosts if h.known_hosts_file}
            key = key or (keys.pop() if len(keys) == 1 else None)
            known = known or (knowns.pop() if len(knowns) == 1 else None)
        if key is None or known is None:
            raise ConfigError(
                "an ssh:// state repo needs --ssh-key and --known-hosts (or an inventory whose "
                "hosts share ssh_key_file and known_hosts_file)"
            )
        return key.expanduser(), known.expanduser()


PLANE = layers.Plane("backup", BackupSettings)


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, path: Path | None = None
) -> BackupSettings:
    """The file (``path``, else ``CLUSTER_BACKUP_FILE``'s), CLUSTER_BACKUP_<KEY> variables and
    ``flags`` (None or "": not given), layered as every plane's settings are."""
    return layers.load(PLANE, flags, environ, path)
