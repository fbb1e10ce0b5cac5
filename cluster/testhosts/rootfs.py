"""Applies a recipe's edits to a root filesystem tree, never writing outside of it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cluster.errors import ClusterError
from cluster.testhosts.recipe import Edit, MakeDir, RemoveGlob, Symlink, WriteFile


def inside(rootfs: Path, path: str) -> Path:
    """Map an absolute in-image path onto ``rootfs``; refuse one whose parents escape it."""
    target = rootfs / path.lstrip("/")
    parent = target.parent.resolve()
    if not parent.is_relative_to(rootfs.resolve()):
        raise ClusterError(f"rootfs edit {path!r} resolves outside {rootfs} ({parent})")
    return target


def apply_edits(rootfs: Path, edits: Iterable[Edit]) -> None:
    """Apply each edit in order; idempotent on an already edited tree."""
    for edit in edits:
        _apply(rootfs, edit)


def _apply(rootfs: Path, edit: Edit) -> None:
    match edit:
        case WriteFile(path, content, mode):
            target = inside(rootfs, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove(target)
            target.write_text(content, encoding="utf-8")
            target.chmod(mode)
        case Symlink(path, link_target):
            target = inside(rootfs, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove(target)
            target.symlink_to(link_target)
        case RemoveGlob(pattern):
            for match in rootfs.glob(pattern.lstrip("/")):
                _remove(inside(rootfs, "/" + str(match.relative_to(rootfs))))
        case MakeDir(path, mode):
            target = inside(rootfs, path)
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(mode)


def _remove(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
