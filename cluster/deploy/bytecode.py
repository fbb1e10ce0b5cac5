"""Wheels with their bytecode inside, compiled once on the control host instead of on every host."""

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


def compile_wheels(directory: Path, cache: Path) -> None:
    """Replace each wheel in ``directory`` by a compiled twin, cached by the original's sha256.

    Only the modules the agent imports when it starts are compiled (every byte more is written
    on every host); when they cannot be told, every module is. A file that is no zip archive
    is left as it is (it is shipped as built).
    """
    cache.mkdir(parents=True, exist_ok=True)
    for wheel in directory.glob(f"{SKIP[0]}*.whl"):
        wheel.unlink()
    wheels = [w for w in sorted(directory.glob("*.whl")) if zipfile.is_zipfile(w)]
    started = started_modules(wheels)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            mine = sorted(set(archive.namelist()) & started) if started is not None else None
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        key = hashlib.sha256(repr(mine).encode()).hexdigest()[:12]
        cached = cache / f"{digest}-{key}.whl"
        if not cached.is_file():
            scratch = cache / f".{digest}-{key}.tmp"
            compile_wheel(wheel, scratch, mine)
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


def compile_wheel(source: Path, target: Path, only: list[str] | None = None) -> None:
    """Write ``target``: every entry of ``source`` plus ``__pycache__/*.pyc`` for its modules
    (those named in ``only``, when given).
    """
    with tempfile.TemporaryDirectory(prefix="ccc-bytecode-") as scratch:
        tree = Path(scratch)
        with zipfile.ZipFile(source) as wheel:
            names = [i.filename for i in wheel.infolist() if not i.is_dir()]
            wheel.extractall(tree)
        # A fixed path inside the .pyc keeps it reproducible; importlib sets the real one on load.
        for name in only if only is not None else [n for n in names if n.endswith(".py")]:
            path = str(tree / name)
            py_compile.compile(path, importlib.util.cache_from_source(path), f"/wheel/{name}",
                               doraise=False, invalidation_mode=MODE, quiet=2)  # fmt: skip
        compiled = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.pyc"))
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as out:
            for name in names + [c for c in compiled if c not in names]:
                info = zipfile.ZipInfo(name, EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = ((tree / name).stat().st_mode & 0o777 | 0o100000) << 16
                out.writestr(info, (tree / name).read_bytes())
