"""Errors of backups and restores: each says which file or ref is wrong and why."""

from __future__ import annotations

from cluster.errors import ClusterError


class BackupError(ClusterError):
    """A backup, restore or maintenance step failed; the message names the path or ref."""


class ChecksumMismatch(BackupError):
    """A backup's files do not match its manifest: corrupted, edited or incomplete."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        super().__init__(f"{where}: does not match its manifest: " + "; ".join(problems))
