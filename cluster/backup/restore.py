"""``restore``: check a backup against its manifest, then rebuild the bare state repo from it."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from cluster.backup import bundle
from cluster.backup.errors import BackupError, ChecksumMismatch
from cluster.backup.manifest import BUNDLE, MANIFEST, read_manifest, verify_files
from cluster.console import StepProgress
from cluster.state.gitcmd import list_refs, run_git
from cluster.state.init import install_hooks

# The repo config the protocol needs; the same as cluster.state.init.init_state_repo sets
# (tests/unit/test_backup.py compares the two).
STATE_CONFIG = (
    ("receive.denyNonFastForwards", "false"),  # leases are renewed by replacing commits
    ("receive.denyDeletes", "false"),  # folds delete claim refs
    ("core.logAllRefUpdates", "false"),  # reflogs would grow with every renewal
    ("gc.autoDetach", "true"),
)


@dataclass(frozen=True)
class RestoreOutcome:
    path: Path
    refs: dict[str, str]
    manifest_checked: bool  # False for a bare .bundle file, which has no manifest


def restore(source: Path, target: Path, *, force: bool = False, hooks: Path | None = None,
            console: Console | None = None) -> RestoreOutcome:  # fmt: skip
    """Rebuild the bare repo ``target`` from a backup dir, its .tar.gz or a .bundle file.

    Nothing is written until the backup checks out; a non-empty ``target`` is replaced only
    with ``force``, and then only after the new repo is complete next to it. With a
    ``console``, each step is drawn as progress there (a bar, or plain lines).
    """
    target = target.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise BackupError(f"{target} exists and is not empty: pass --force to replace it")
    with (tempfile.TemporaryDirectory(prefix="ccc-restore-") as scratch,
          StepProgress(console, "restore", total=3) as steps):  # fmt: skip
        with steps.step(f"check {source.name}"):
            state_bundle, refs, checked = _open(source, Path(scratch))
        target.parent.mkdir(parents=True, exist_ok=True)
        build = target.with_name(f".{target.name}.restoring-{os.getpid()}")
        shutil.rmtree(build, ignore_errors=True)
        try:
            with steps.step(f"rebuild the bare repo ({len(refs)} refs)"):
                _build(build, state_bundle, refs, hooks)
            with steps.step(f"move it into place at {target}"):
                _swap(build, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return RestoreOutcome(target, refs, checked)


def _open(source: Path, scratch: Path) -> tuple[Path, dict[str, str], bool]:
    """The bundle to restore, the refs it must give, and whether a manifest vouched for it."""
    if not source.exists():
        raise BackupError(f"{source}: no such backup")
    root = source
    if source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source, "r:*") as archive:
            archive.extractall(scratch, filter="data")
        found = [p.parent for p in scratch.glob(f"*/{MANIFEST}")]
        if len(found) != 1:
            raise BackupError(f"{source}: expected one backup directory with a {MANIFEST}")
        root = found[0]
    elif source.is_file():
        bundle.verify(source)  # a bare bundle: git's own checksum is all there is
        return source, bundle.list_heads(source), False
    manifest = read_manifest(root)
    verify_files(root, manifest)
    state_bundle = root / BUNDLE
    bundle.verify(state_bundle)
    refs = bundle.list_heads(state_bundle)
    if refs != manifest["refs"]:
        raise ChecksumMismatch(str(root), [f"the refs in {BUNDLE} differ from the manifest's"])
    return state_bundle, refs, True


def _build(build: Path, state_bundle: Path, refs: dict[str, str], hooks: Path | None) -> None:
    run_git(["init", "--quiet", "--bare", "--initial-branch=main", str(build)])
    for key, value in STATE_CONFIG:
        run_git(["config", key, value], git_dir=build)
    if hooks is not None:
        install_hooks(build, hooks)
    bundle.fetch_all(state_bundle, build)
    got = list_refs(["refs/"], git_dir=build)
    if got != refs:
        missing = sorted(set(refs) - set(got)) + sorted(r for r in got if got[r] != refs.get(r))
        raise BackupError(f"restored refs differ from the backup's: {', '.join(missing[:5])}")


def _swap(build: Path, target: Path) -> None:
    """Move the finished repo into place; an old one is removed only once the new one is in."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
        target.rename(old)
    try:
        build.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old)
