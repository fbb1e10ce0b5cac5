"""Backup names (state-<UTC time>) and pruning by age and by count; other files stay."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

PREFIX = "state-"
TARBALL = ".tar.gz"
_TIME = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^state-(?P<when>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?(?P<tar>\.tar\.gz)?$")


def backup_name(dest: Path, now: float) -> str:
    """``state-20250102T030405Z``, with ``-2``, ``-3``... when that second is taken already."""
    base = PREFIX + datetime.fromtimestamp(now, tz=UTC).strftime(_TIME)
    name, number = base, 1
    while (dest / name).exists() or (dest / (name + TARBALL)).exists():
        number += 1
        name = f"{base}-{number}"
    return name


def parse_name(name: str) -> tuple[float, int] | None:
    """(time, sequence) of a backup's file name, or None for anything that is not a backup."""
    match = _NAME.match(name)
    if match is None:
        return None
    when = datetime.strptime(match["when"], _TIME).replace(tzinfo=UTC).timestamp()
    return when, int(match["n"] or 1)


def list_backups(dest: Path) -> list[tuple[float, Path]]:
    """The backups in ``dest``, newest first."""
    found: list[tuple[float, int, Path]] = []
    if dest.is_dir():
        for path in dest.iterdir():
            parsed = parse_name(path.name)
            if parsed is not None:
                found.append((parsed[0], parsed[1], path))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(when, path) for when, _, path in found]


def prune(dest: Path, keep_days: float, keep: int, now: float, protect: Path) -> list[Path]:
    """Remove backups older than ``keep_days`` and beyond the newest ``keep`` (0: no limit).

    ``protect`` (the backup just written) is never removed and counts among the kept.
    """
    removed: list[Path] = []
    for index, (when, path) in enumerate(list_backups(dest)):
        if path == protect:
            continue
        too_old = keep_days > 0 and now - when > keep_days * 86400
        too_many = keep > 0 and index >= keep
        if too_old or too_many:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed
