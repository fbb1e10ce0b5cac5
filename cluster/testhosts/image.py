"""Builds the test-host image with debootstrap and ``docker import``, once per recipe."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from cluster.errors import ClusterError
from cluster.testhosts.mirror import find_mirror
from cluster.testhosts.recipe import Recipe
from cluster.testhosts.rootfs import apply_edits
from cluster.transport import docker

# Outside the project tree (a rootfs holds device nodes and ~450 MB no tool should scan) and
# root-owned (debootstrap runs as root; a world-writable /tmp path could be pre-empted).
DEFAULT_WORK_DIR = Path("/var/cache/ccc-testhosts")
DEBOOTSTRAP_TIMEOUT = 1200.0
IMPORT_TIMEOUT = 600.0

Say = Callable[[str], None]


def ensure_image(
    handle: docker.Client,
    recipe: Recipe | None = None,
    *,
    work_dir: Path = DEFAULT_WORK_DIR,
    mirror: str | None = None,
    say: Say = print,
) -> str:
    """Return the image tag for ``recipe``, building it only if the engine lacks it.

    A file lock per tag makes concurrent callers wait for one build instead of racing.
    """
    recipe = recipe or Recipe()
    tag = recipe.image_tag()
    if docker.image_exists(handle, tag):
        return tag
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with FileLock(str(work_dir / f"{tag.replace(':', '_')}.lock")):
        if docker.image_exists(handle, tag):
            return tag
        build_image(handle, recipe, work_dir, mirror or find_mirror(recipe.suite), say)
    return tag


def build_image(
    handle: docker.Client, recipe: Recipe, work_dir: Path, mirror: str, say: Say
) -> None:
    tag = recipe.image_tag()
    build_dir = Path(tempfile.mkdtemp(prefix="build-", dir=work_dir))
    rootfs = build_dir / "rootfs"
    try:
        say(f"building {tag}: debootstrap {recipe.suite} from {mirror}")
        _debootstrap(recipe, rootfs, mirror, build_dir / "debootstrap.log")
        apply_edits(rootfs, recipe.edits)
        say(f"importing {tag}")
        _import(handle, rootfs, tag, recipe.import_changes())
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)


def _debootstrap(recipe: Recipe, rootfs: Path, mirror: str, log: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise ClusterError("debootstrap is not installed: run ./setup.sh")
    argv = recipe.debootstrap_argv(rootfs, mirror)
    with log.open("wb") as out:
        try:
            done = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=DEBOOTSTRAP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"debootstrap timed out after {exc.timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        debootstrap_log = rootfs / "debootstrap" / "debootstrap.log"
        if debootstrap_log.is_file():
            tail += debootstrap_log.read_text(errors="replace").splitlines()[-20:]
        raise ClusterError(f"debootstrap failed (exit {done.returncode}):\n" + "\n".join(tail))


def _import(handle: docker.Client, rootfs: Path, tag: str, changes: list[str]) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    try:
        docker.import_image(handle, tar.stdout, tag, changes)
    finally:
        tar.stdout.close()
        _, err = tar.communicate(timeout=IMPORT_TIMEOUT)
    if tar.returncode != 0:
        docker.remove_image(handle, tag)  # a truncated stream must not pass for a cached image
        raise ClusterError(f"tar of {rootfs} failed: {err.decode(errors='replace')[-2000:]}")
