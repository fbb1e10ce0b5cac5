"""Backups of the state repo, restores, scheduled jobs (cron) and state repo maintenance."""

from __future__ import annotations

from cluster.backup.create import BackupOutcome, create_backup
from cluster.backup.errors import BackupError, ChecksumMismatch
from cluster.backup.maintain import MaintainOutcome, maintain
from cluster.backup.restore import restore
from cluster.backup.settings import BackupSettings, load_settings

__all__ = [
    "BackupError",
    "BackupOutcome",
    "BackupSettings",
    "ChecksumMismatch",
    "MaintainOutcome",
    "create_backup",
    "load_settings",
    "maintain",
    "restore",
]
