"""Wheels of this project and its dependencies, built once per source hash, with a manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from cluster.deploy.bytecode import compile_wheels
from cluster.deploy.zipsafe import in_place
from cluster.errors import ClusterError

PROJECT = "claude-code-cluster"
MANIFEST = "manifest.json"
IN_PLACE = "in-place.json"  # the wheels hosts import in place (cluster.deploy.zipsafe)
HASH_INPUTS = ("pyproject.toml", "README.md")  # README: pyproject's readme is wheel metadata
PACKAGE_DIR = "cluster"
_SKIP = ("__pycache__", ".mypy_cache", ".pytest_cache")

Runner = Callable[[list[str]], None]


class BuildError(ClusterError):
    """pip could not build the wheels, or the cache holds something else than a build."""


@dataclass(frozen=True)
class WheelSet:
    """A directory of wheels and its manifest (file name -> sha256)."""

    directory: Path
    version: str
    source_hash: str
    manifest: dict[str, str]
    built: bool  # False when the cache already held this build
    in_place: frozenset[str] = frozenset()  # imported as archives on hosts, not unpacked

    @property
    def release(self) -> str:
        """``<version>-<hash>``, the name of the release directory on hosts."""
        return f"{self.version}-{self.source_hash}"


@dataclass(frozen=True)
class ManifestDiff:
    push: tuple[str, ...]  # missing on the host or with another checksum
    unchanged: tuple[str, ...]
    stale: tuple[str, ...]  # on the host, not in this build


def diff_manifest(local: Mapping[str, str], remote: Mapping[str, str]) -> ManifestDiff:
    """Which files to push: a pure comparison of checksums; an empty push means nothing to do."""
    push = sorted(name for name, digest in local.items() if remote.get(name) != digest)
    same = sorted(name for name, digest in local.items() if remote.get(name) == digest)
    return ManifestDiff(tuple(push), tuple(same), tuple(sorted(set(remote) - set(local))))


def source_files(root: Path) -> list[Path]:
    """pyproject.toml, README.md and every file of the package, sorted; caches excluded."""
    files = [root / name for name in HASH_INPUTS if (root / name).is_file()]
    package = sorted(
        path
        for path in (root / PACKAGE_DIR).rglob("*")
        if path.is_file() and path.suffix != ".pyc" and not set(path.parts) & set(_SKIP)
    )
    return files + package


def source_hash(root: Path) -> str:
    """16 hex digits of sha256 over the relative path and bytes of each source file."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def project_version(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def checksums(paths: Iterable[Path]) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(paths)}


def pip_wheel_argv(python: Path, project: Path, wheel_dir: Path) -> list[str]:
    return [str(python), "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input",
            "--wheel-dir", str(wheel_dir), str(project)]  # fmt: skip


def install_argv(release: PurePosixPath, wheel_dir: PurePosixPath, version: str) -> list[str]:
    """The pip equivalent of what hosts run (remote.INSTALL) to fill ``release/venv``, offline."""
    return [str(release / "venv" / "bin" / "pip"), "install", "--no-index", "--find-links",
            str(wheel_dir), f"{PROJECT}=={version}"]  # fmt: skip


def build_wheels(
    root: Path, cache_root: Path, python: Path | None = None, runner: Runner | None = None
) -> WheelSet:
    """Build into ``cache_root/<version>-<hash>`` unless a complete build is already there.

    Only this control host reaches the package index; hosts install from the result offline.
    A lock file serialises builders; a build appears under its final name only when complete.
    """
    version, digest = project_version(root), source_hash(root)
    final = cache_root / f"{version}-{digest}"
    cache_root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_root / ".lock")):
        cached = _read_manifest(final)
        if cached is not None:
            manifest, zipped = cached
            return WheelSet(final, version, digest, manifest, built=False, in_place=zipped)
        scratch = cache_root / f".{final.name}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        (runner or _run)(pip_wheel_argv(python or Path(sys.executable), root, scratch))
        zipped = in_place(scratch.glob("*.whl"))
        compile_wheels(scratch, cache_root / "compiled", zipped)
        manifest = checksums(scratch.glob("*.whl"))
        if not any(name.startswith(PROJECT.replace("-", "_")) for name in manifest):
            raise BuildError(f"pip wheel left no {PROJECT} wheel in {scratch}")
        zipped &= manifest.keys()
        (scratch / IN_PLACE).write_text(json.dumps(sorted(zipped), indent=1) + "\n")
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # a half-copied leftover, never a complete build
        scratch.replace(final)
    return WheelSet(final, version, digest, manifest, built=True, in_place=zipped)


def _read_manifest(directory: Path) -> tuple[dict[str, str], frozenset[str]] | None:
    """The manifest and the in-place names if every file listed is there; None: build again."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        zipped = json.loads((directory / IN_PLACE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not manifest or not isinstance(zipped, list):
        return None
    if not all((directory / name).is_file() for name in manifest):
        return None
    if not set(zipped) <= set(manifest):
        return None
    return {str(k): str(v) for k, v in manifest.items()}, frozenset(map(str, zipped))


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise BuildError(f"pip wheel exited {done.returncode}: {tail or '(no stderr)'}")
