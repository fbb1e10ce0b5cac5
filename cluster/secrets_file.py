"""Secrets from the environment or from a KEY=VALUE file that only its owner may read."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from cluster.errors import ConfigError, SecretMissing
from cluster.secret import Secret


def read_secrets_file(path: Path) -> dict[str, Secret]:
    """Parse ``path`` (``KEY=VALUE`` lines, ``#`` comments); refuse a file others may read."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise SecretMissing(f"secrets file {path} does not exist") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secrets file {path} is mode {stat.S_IMODE(info.st_mode):04o}; "
            f"it must be readable by its owner only (chmod 600 {path})"
        )
    values: dict[str, Secret] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")  # the value stays unsaid
        values[key.strip()] = Secret(value.strip().strip('"').strip("'"))
    return values


def lookup(name: str, path: Path | None, environ: Mapping[str, str] | None = None) -> Secret | None:
    """``name`` from the environment first, then from the secrets file; None when unset."""
    return lookup_all((name,), path, environ).get(name)


def lookup_all(
    names: Sequence[str], path: Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, Secret]:
    """Each of ``names`` that is set: from the environment first, else from the secrets file,
    which is read once, and only when the environment lacks one of them."""
    env = os.environ if environ is None else environ
    found = {name: Secret(env[name]) for name in names if env.get(name)}
    if len(found) < len(names) and path is not None and path.exists():
        in_file = read_secrets_file(path)
        missing = [name for name in names if name not in found and name in in_file]
        found.update({name: in_file[name] for name in missing})
    return found


def require(name: str, path: Path | None, environ: Mapping[str, str] | None = None) -> Secret:
    found = lookup(name, path, environ)
    if found is None or not found:
        where = f"the environment or {path}" if path else "the environment"
        raise SecretMissing(f"{name} is not set (looked in {where})")
    return found
