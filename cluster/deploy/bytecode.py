"""Wheels with their bytecode inside, compiled once on the control host instead of on every host.

A wheel that hosts unpack gets ``__pycache__/*.pyc`` entries (where the import system looks
beside a file). A wheel that hosts import in place (cluster.deploy.zipsafe) gets ``module.pyc``
beside each ``module.py`` and an entry for each directory, which is where ``zipimport`` looks
(it reads no ``__pycache__``, and finds a namespace package only by its directory entry).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Collection
from pathlib import Path

# Fixed entry times keep a compiled wheel's checksum stable across rebuilds.
EPOCH = (2000, 1, 1, 0, 0, 0)
# Unchecked hash-based .pyc: valid whatever the files' mtimes, never compared with the source;
# a release directory is immutable once installed, so the source cannot drift from it. A host
# whose Python has another magic number ignores them (the tag is in the file name).
MODE = py_compile.PycInvalidationMode.UNCHECKED_HASH
SKIP = ("pip-",)  # the installer itself is not shipped: hosts install with the stdlib
# What `claude-cluster agent run` imports before its first heartbeat.
AGENT_MODULES = ("cluster.cli", "cluster.agent.build", "cluster.agent.config",
                 "cluster.agent.events", "cluster.agent.loop")  # fmt: skip
PROBE = """import importlib, json, sys
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})))
"""


def compile_wheels(directory: Path, cache: Path, in_place: Collection[str] = frozenset()) -> None:
    """Replace each wheel in ``directory`` by a compiled twin, cached by the original's sha256.

    Of an unpacked wheel only the modules the agent imports when it starts are compiled (every
    file more is written on every host); when they cannot be told, every module is. A wheel
    named in ``in_place`` has every module compiled: its bytecode costs bytes, not files. A
    file that is no zip archive is left as it is (it is shipped as built).
    """
    cache.mkdir(parents=True, exist_ok=True)
    for wheel in directory.glob(f"{SKIP[0]}*.whl"):
        wheel.unlink()
    wheels = [w for w in sorted(directory.glob("*.whl")) if zipfile.is_zipfile(w)]
    started = started_modules(wheels)
    for wheel in wheels:
        zipped = wheel.name in in_place
        mine = None  # every module
        if started is not None and not zipped:
            with zipfile.ZipFile(wheel) as archive:
                mine = sorted(set(archive.namelist()) & started)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        key = hashlib.sha256(repr((mine, zipped)).encode()).hexdigest()[:12]
        cached = cache / f"{digest}-{key}.whl"
        if not cached.is_file():
            scratch = cache / f".{digest}-{key}.tmp"
            compile_wheel(wheel, scratch, mine, zipped=zipped)
            scratch.replace(cached)
        shutil.copyfile(cached, wheel)


def started_modules(wheels: list[Path]) -> frozenset[str] | None:
    """Paths (inside the wheels) of the modules ``AGENT_MODULES`` import; None if unknown."""
    with tempfile.TemporaryDirectory(prefix="ccc-modules-") as scratch:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(scratch)
        # -I -S: nothing but the standard library and these wheels on the path.
        argv = [sys.executable, "-I", "-S", "-c", PROBE, scratch, *AGENT_MODULES]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            return None
        files = json.loads(done.stdout)
        root = str(Path(scratch).resolve()) + "/"
        return frozenset(f.removeprefix(root) for f in files if f.startswith(root))


def compile_wheel(
    source: Path, target: Path, only: list[str] | None = None, *, zipped: bool = False
) -> None:
    """Write ``target``: every entry of ``source`` plus bytecode for its modules (those named
    in ``only``, when given): in ``__pycache__``, or beside each module when ``zipped``.
    """
    with tempfile.TemporaryDirectory(prefix="ccc-bytecode-") as scratch:
        tree = Path(scratch)
        with zipfile.ZipFile(source) as wheel:
            names = [i.filename for i in wheel.infolist() if not i.is_dir()]
            wheel.extractall(tree)
        # A fixed path inside the .pyc keeps it reproducible; importlib sets the real one on load
        # (and tracebacks of zipped modules read their source through the zipimport loader).
        for name in only if only is not None else [n for n in names if n.endswith(".py")]:
            path = str(tree / name)
            cfile = path + "c" if zipped else importlib.util.cache_from_source(path)
            py_compile.compile(path, cfile, f"/wheel/{name}", doraise=False,
                               invalidation_mode=MODE, quiet=2)  # fmt: skip
        compiled = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.pyc"))
        files = names + [c for c in compiled if c not in names]
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as out:
            for name in directories(files) if zipped else []:
                info = zipfile.ZipInfo(name, EPOCH)
                info.external_attr = (0o40755 << 16) | 0x10  # a directory, also for MS-DOS
                out.writestr(info, b"")
            for name in files:
                info = zipfile.ZipInfo(name, EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = ((tree / name).stat().st_mode & 0o777 | 0o100000) << 16
                out.writestr(info, (tree / name).read_bytes())


def directories(names: Collection[str]) -> list[str]:
    """Every directory (``a/``, ``a/b/``) holding one of ``names``, parents first."""
    seen = {"/".join(name.split("/")[:depth]) + "/"
            for name in names for depth in range(1, name.count("/") + 1)}  # fmt: skip
    return sorted(seen)
