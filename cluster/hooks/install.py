"""Install the hook scripts of hooks/ with the interpreter that runs them written in."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from cluster.errors import ConfigError
from cluster.state.gitcmd import run_git
from cluster.state.remote import local_path

HOOKS_DIR = Path(__file__).resolve().parents[2] / "hooks"
SERVER_HOOKS = ("pre-receive", "update", "post-receive")
CLIENT_HOOKS = ("pre-commit",)
PYTHON_LINE = re.compile(rb"^CLUSTER_HOOK_PYTHON=.*$", re.MULTILINE)


def interpreter(environ: Mapping[str, str] | None = None) -> str:
    """``$CLUSTER_PYTHON``, else this process's interpreter (a venv's, kept as its path)."""
    env = os.environ if environ is None else environ
    return env.get("CLUSTER_PYTHON") or str(Path(sys.executable).absolute())


def render(script: bytes, python: str) -> bytes:
    """The hook script with ``python`` recorded as its interpreter."""
    line = f"CLUSTER_HOOK_PYTHON={shlex.quote(python)}".encode()
    return PYTHON_LINE.sub(lambda _: line, script, count=1)


def install_into(target: Path, source: Path, names: tuple[str, ...],
                 python: str | None = None) -> list[str]:
    """Copy the hooks ``names`` found in ``source`` into the hooks directory ``target``."""
    python = python or interpreter()
    installed = []
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        hook = source / name
        if not hook.is_file():
            continue
        path = target / name
        temp = target / f".{name}.tmp"
        temp.write_bytes(render(hook.read_bytes(), python))
        temp.chmod(0o755)
        temp.replace(path)
        installed.append(name)
    return installed


def install(state: str, source: Path = HOOKS_DIR, python: str | None = None) -> list[str]:
    """Server hooks into a bare state repo, or the client hook into a clone of one."""
    where = state.removeprefix("file://") if state.startswith("file://") else state
    path = local_path(where)
    if path is None:
        raise ConfigError(f"{state}: hooks are installed where the repo lives; run this on "
                          "the state host with its path")
    if not path.is_dir():
        raise ConfigError(f"{state}: no such directory")
    done = run_git(["rev-parse", "--is-bare-repository", "--absolute-git-dir"], cwd=path,
                   check=False)
    if done.returncode != 0:
        raise ConfigError(f"{state}: not a git repository")
    bare, git_dir = done.stdout.split()
    if bare == "true":
        return install_into(Path(git_dir) / "hooks", source, SERVER_HOOKS, python)
    # Our git runs with hooks off (cluster.state.gitcmd), so ask the clone's own config.
    configured = run_git(["config", "--local", "--get", "core.hooksPath"], cwd=path,
                         check=False).stdout.strip()
    common = run_git(["rev-parse", "--git-common-dir"], cwd=path).stdout.strip()
    hooks = Path(configured).expanduser() if configured else Path(common) / "hooks"
    return install_into(path / hooks, source, CLIENT_HOOKS, python)
