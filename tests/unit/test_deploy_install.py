"""Compiled wheels and the stdlib installer: bytecode shipped, console scripts written, no pip;
wheels imported in place where nothing in them needs to be a real file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cluster.deploy.bytecode import compile_wheels
from cluster.deploy.installer import INSTALL, PTH
from cluster.deploy.zipsafe import in_place, why_unpacked

WHEEL = "demo-1.0-py3-none-any.whl"
FILES = {
    "demo/__init__.py": "def main() -> int:\n    print('demo says hi')\n    return 0\n",
    "demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/entry_points.txt": "[console_scripts]\ndemo = demo:main\n",
    "demo-1.0.data/scripts/hello": "#!python\nprint('hello from a script')\n",
}


ZWHEEL = "zdemo-2.0-py3-none-any.whl"
ZFILES = {  # a namespace package (no __init__ in zns/), metadata, a console script
    "zns/zdemo/__init__.py": "def main() -> int:\n    print('zipped says hi')\n    return 0\n\n"
    "def boom() -> None:\n    raise RuntimeError('boom from the archive')\n",
    "zdemo-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: zdemo\nVersion: 2.0\n",
    "zdemo-2.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "zdemo-2.0.dist-info/entry_points.txt": "[console_scripts]\nzdemo = zns.zdemo:main\n",
}


def write_wheel(path: Path, files: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    return path


def make_wheel(directory: Path) -> Path:
    write_wheel(directory / WHEEL, FILES)
    (directory / "pip-24.0-py3-none-any.whl").write_bytes(b"not shipped")
    return directory / WHEEL


def install(target: Path, wheels: Path, names: list[str], zipped: list[str]) -> None:
    args = {"target": str(target), "wheel_dir": str(wheels), "wheels": names,
            "in_place": zipped, "pth": PTH, "mark": ".ok"}  # fmt: skip
    subprocess.run([sys.executable, "-c", INSTALL, json.dumps(args)], check=True)


def test_compiled_wheels_carry_bytecode_and_are_reproducible(tmp_path: Path) -> None:
    make_wheel(tmp_path / "a")
    make_wheel(tmp_path / "b")
    compile_wheels(tmp_path / "a", tmp_path / "cache-a")
    compile_wheels(tmp_path / "b", tmp_path / "cache-b")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [WHEEL]  # pip is not shipped
    names = zipfile.ZipFile(tmp_path / "a" / WHEEL).namelist()
    assert any(n.startswith("demo/__pycache__/__init__.") and n.endswith(".pyc") for n in names)
    assert set(FILES) <= set(names)
    digests = {hashlib.sha256((tmp_path / d / WHEEL).read_bytes()).hexdigest() for d in "ab"}
    assert len(digests) == 1  # same wheel in, same bytes out: the manifest stays stable


def test_install_unpacks_wheels_and_writes_console_scripts(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    compile_wheels(wheels, tmp_path / "cache")
    target = tmp_path / "releases" / "1.0-abc"
    install(target, wheels, [WHEEL], [])
    assert (target / ".ok").exists()
    script = target / "venv" / "bin" / "demo"
    done = subprocess.run([str(script)], capture_output=True, text=True, check=True)
    assert done.stdout == "demo says hi\n"
    hello = subprocess.run([str(target / "venv" / "bin" / "hello")], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert hello.stdout == "hello from a script\n"
    assert list(target.glob("venv/lib/python*/site-packages/demo/__pycache__/*.pyc"))


def test_pure_wheels_are_imported_in_place_with_their_bytecode(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    write_wheel(wheels / ZWHEEL, ZFILES)
    zipped = in_place(wheels.glob("*.whl"))
    assert ZWHEEL in zipped  # demo has no WHEEL file: it is unpacked
    assert WHEEL not in zipped
    compile_wheels(wheels, tmp_path / "cache", zipped)
    names = zipfile.ZipFile(wheels / ZWHEEL).namelist()
    assert "zns/zdemo/__init__.pyc" in names  # beside the module, where zipimport looks
    assert {"zns/", "zns/zdemo/"} <= set(names)  # a namespace package needs its directory entry
    target = tmp_path / "releases" / "2.0-abc"
    install(target, wheels, [WHEEL, ZWHEEL], sorted(zipped))

    linked = target / "wheels" / ZWHEEL
    assert linked.stat().st_ino == (wheels / ZWHEEL).stat().st_ino  # a link, not a copy
    site = next(target.glob("venv/lib/python*/site-packages"))
    assert not (site / "zns").exists()
    assert (site / PTH).read_text() == f"{linked}\n"
    python = str(target / "venv" / "bin" / "python")
    probe = (
        "import importlib.metadata as m, zns.zdemo as z;"
        "print(type(z.__loader__).__name__, z.__file__.endswith('.pyc'), m.version('zdemo'))"
    )
    seen = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert seen.stdout.split() == ["zipimporter", "True", "2.0"]
    script = subprocess.run([str(target / "venv" / "bin" / "zdemo")], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert script.stdout == "zipped says hi\n"
    # logging and traceback read a zipped module's source through its loader
    crash = "import traceback, zns.zdemo as z\ntry:\n    z.boom()\nexcept Exception:\n" \
            "    traceback.print_exc()\n"  # fmt: skip
    done = subprocess.run([python, "-c", crash], capture_output=True, text=True, check=True)
    assert "raise RuntimeError('boom from the archive')" in done.stderr


PURE = {"x-1.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n", "x/__init__.py": ""}


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"x/data.py": "HERE = __file__\n"}, "x/data.py uses __file__"),
        ({"x/_speed.cpython-311-x86_64-linux-gnu.so": ""}, "native code"),
        ({"x/libfoo.so.1": ""}, "native code"),
        ({"x-1.data/scripts/tool": "#!python\n"}, "installs outside site-packages"),
        ({"x.pth": "import x\n"}, "has a .pth file"),
        ({"x-1.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"}, "not purelib"),
    ],
)
def test_wheels_that_need_real_files_are_unpacked(
    tmp_path: Path, extra: dict[str, str], reason: str
) -> None:
    assert why_unpacked(zipfile.ZipFile(write_wheel(tmp_path / "pure.whl", PURE))) is None
    wheel = write_wheel(tmp_path / "x-1-py3-none-any.whl", {**PURE, **extra})
    assert reason in (why_unpacked(zipfile.ZipFile(wheel)) or "")
    assert in_place([wheel, tmp_path / "missing.whl"]) == frozenset()
