"""What a jail must show, beyond the system directories, for a program to run in it: the
agent's own Python (the bridge and the tools' helpers) and an executor's program (the Claude
Code CLI's npm package, the node it names)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cluster.sandbox.jail import SYSTEM_DIRS


def interpreter_paths() -> tuple[Path, ...]:
    """The agent's Python installation, shown read-only so that the bridge and the tools'
    helpers can run inside: ``sys.prefix`` (a venv) and the installation it points to."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    return tuple(sorted(p for p in paths if not p.is_relative_to("/usr")))


def program_paths(program: Path) -> tuple[Path, ...]:
    """What a jail must show, beyond the system directories, to run ``program`` (a real path,
    as the agent runs it): the npm package it belongs to (how the Claude Code CLI is
    installed; else its own directory) and the installation of the interpreter its ``#!``
    line names (a node outside /usr)."""
    shown = []
    if not _in_system(program):
        shown.append(next((d for d in program.parents if _npm_package(d)), program.parent))
    interpreter = _interpreter(program)
    if interpreter is not None and not _in_system(interpreter):
        shown.append(interpreter.parent.parent if interpreter.parent.name == "bin"
                     else interpreter.parent)
    return tuple(shown)


def _npm_package(path: Path) -> bool:
    """An installed npm package: ``node_modules/NAME`` or ``node_modules/@SCOPE/NAME``."""
    return (path / "package.json").is_file() and "node_modules" in (
        path.parent.name, path.parent.parent.name)


def _in_system(path: Path) -> bool:
    return any(path.is_relative_to(d) for d in SYSTEM_DIRS)


def _interpreter(program: Path) -> Path | None:
    """The real path of the interpreter a script's ``#!`` line names (``env NAME`` looked up
    on PATH), or None for a binary."""
    try:
        with program.open("rb") as handle:
            line = handle.readline(256)
    except OSError:
        return None
    if not line.startswith(b"#!"):
        return None
    words = line[2:].decode("utf-8", "replace").split()
    if words and Path(words[0]).name == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    found = shutil.which(words[0]) if words else None
    return Path(found).resolve() if found else None
