"""Install the hook scripts of hooks/ with the interpreter that runs them written in."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
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
PATH_LINE = re.compile(rb"^CLUSTER_HOOK_PATH=.*$", re.MULTILINE)
# Run by the hook's interpreter at install: where it finds the project (an editable install's
# finder included) and everything `site` would have put on its path.
_WHERE = ("import os, sys, cluster\n"
          "root = os.path.dirname(os.path.dirname(os.path.abspath(cluster.__file__)))\n"
          "print('\\n'.join(dict.fromkeys([root, *(p for p in sys.path if os.path.isdir(p))])))")


def interpreter(environ: Mapping[str, str] | None = None) -> str:
    """``$CLUSTER_PYTHON``, else this process's interpreter (a venv's, kept as its path)."""
    env = os.environ if environ is None else environ
    return env.get("CLUSTER_PYTHON") or str(Path(sys.executable).absolute())


def import_path(python: str) -> str:
    """The directories ``python`` imports the project and its libraries from, joined by
    ``:``, for a hook that starts it without ``site``; empty (the hook then starts it as
    usual) when it cannot say, or when a directory's name would not survive the join."""
    try:
        done = subprocess.run([python, "-P", "-c", _WHERE], capture_output=True, text=True,
                              timeout=60, cwd="/", check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    dirs = done.stdout.splitlines()
    if done.returncode != 0 or not dirs or any(":" in d or not d.startswith("/") for d in dirs):
        return ""
    return ":".join(dirs)


def render(script: bytes, python: str, path: str = "") -> bytes:
    """The hook script with ``python`` recorded as its interpreter and ``path`` (see
    :func:`import_path`) as the directories it imports from."""
    line = f"CLUSTER_HOOK_PYTHON={shlex.quote(python)}".encode()
    script = PYTHON_LINE.sub(lambda _: line, script, count=1)
    path_line = f"CLUSTER_HOOK_PATH={shlex.quote(path)}".encode()
    return PATH_LINE.sub(lambda _: path_line, script, count=1)


def install_into(target: Path, source: Path, names: tuple[str, ...],
                 python: str | None = None) -> list[str]:
    """Copy the hooks ``names`` found in ``source`` into the hooks directory ``target``."""
    python = python or interpreter()
    dirs: str | None = None  # asked of the interpreter once, and only for a script that uses it
    installed = []
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        hook = source / name
        if not hook.is_file():
            continue
        script = hook.read_bytes()
        if dirs is None and PATH_LINE.search(script):
            dirs = import_path(python)
        path = target / name
        temp = target / f".{name}.tmp"
        temp.write_bytes(render(script, python, dirs or ""))
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
