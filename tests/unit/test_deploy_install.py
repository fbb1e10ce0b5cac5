"""Compiled wheels and the stdlib installer: bytecode shipped, console scripts written, no pip."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from cluster.deploy.bytecode import compile_wheels
from cluster.deploy.installer import INSTALL

WHEEL = "demo-1.0-py3-none-any.whl"
FILES = {
    "demo/__init__.py": "def main() -> int:\n    print('demo says hi')\n    return 0\n",
    "demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/entry_points.txt": "[console_scripts]\ndemo = demo:main\n",
    "demo-1.0.data/scripts/hello": "#!python\nprint('hello from a script')\n",
}


def make_wheel(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / WHEEL, "w") as wheel:
        for name, text in FILES.items():
            wheel.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    (directory / "pip-24.0-py3-none-any.whl").write_bytes(b"not shipped")
    return directory / WHEEL


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
    args = {"target": str(target), "wheel_dir": str(wheels), "wheels": [WHEEL], "mark": ".ok"}
    subprocess.run([sys.executable, "-c", INSTALL, json.dumps(args)], check=True)
    assert (target / ".ok").exists()
    script = target / "venv" / "bin" / "demo"
    done = subprocess.run([str(script)], capture_output=True, text=True, check=True)
    assert done.stdout == "demo says hi\n"
    hello = subprocess.run([str(target / "venv" / "bin" / "hello")], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert hello.stdout == "hello from a script\n"
    assert list(target.glob("venv/lib/python*/site-packages/demo/__pycache__/*.pyc"))
