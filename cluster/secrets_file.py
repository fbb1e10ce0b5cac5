"""Secrets from the environment, a systemd credential, or a KEY=VALUE file only its owner reads."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from cluster.errors import ConfigError, SecretMissing
from cluster.secret import Secret

# The agent's unit passes /etc/claude-cluster/secrets.env (root's, mode 0600) as this credential
# (LoadCredential=); systemd sets CREDENTIALS_DIRECTORY to where the unit can read it.
CREDENTIAL = "secrets.env"
CREDENTIALS_VARIABLE = "CREDENTIALS_DIRECTORY"


def refuse_exposed(path: Path, mode: int, what: str,
                   exposed: int = stat.S_IRWXG | stat.S_IRWXO) -> None:
    """Refuse a file holding secrets whose ``mode`` lets others (by default: anyone but its
    owner) at it; the message says what to run."""
    if mode & exposed:
        raise ConfigError(
            f"{what} {path} is mode {stat.S_IMODE(mode):04o}; "
            f"it must be readable by its owner only (chmod 600 {path})"
        )


def read_secrets_file(path: Path, credential: bool = False) -> dict[str, Secret]:
    """Parse ``path`` (``KEY=VALUE`` lines, ``#`` comments); refuse a file others may read.

    A ``credential`` (a file systemd put in the unit's credentials directory, 0400, or 0440
    when an ACL grants the service user read) is refused only if anyone may write it or others
    may read it: the directory itself is the unit's alone.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise SecretMissing(f"secrets file {path} does not exist") from exc
    exposed = stat.S_IWGRP | stat.S_IRWXO if credential else stat.S_IRWXG | stat.S_IRWXO
    refuse_exposed(path, info.st_mode, "secrets file", exposed)
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


def credential_path(environ: Mapping[str, str]) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/secrets.env`` when systemd set the variable, else None."""
    directory = environ.get(CREDENTIALS_VARIABLE)
    return Path(directory) / CREDENTIAL if directory else None


def lookup(name: str, path: Path | None, environ: Mapping[str, str] | None = None) -> Secret | None:
    """``name`` from the environment, the unit's credential or the secrets file; None if unset."""
    return lookup_all((name,), path, environ).get(name)


def lookup_all(
    names: Sequence[str], path: Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, Secret]:
    """Each of ``names`` that is set: from the environment first, else from the credential
    ``$CREDENTIALS_DIRECTORY/secrets.env`` (when that variable is set), else from the secrets
    file; each file is read once, and only when a name is still missing."""
    env = os.environ if environ is None else environ
    found = {name: Secret(env[name]) for name in names if env.get(name)}
    sources = ((credential_path(env), True), (path, False))
    for source, credential in sources:
        if len(found) < len(names) and source is not None and source.exists():
            in_file = read_secrets_file(source, credential)
            missing = [name for name in names if name not in found and name in in_file]
            found.update({name: in_file[name] for name in missing})
    return found


def require(name: str, path: Path | None, environ: Mapping[str, str] | None = None) -> Secret:
    found = lookup(name, path, environ)
    if found is None or not found:
        env = os.environ if environ is None else environ
        places = [str(p) for p in (credential_path(env), path) if p is not None]
        where = " or ".join(["the environment", *places])
        raise SecretMissing(f"{name} is not set (looked in {where})")
    return found


def read_secret_line(path: Path, what: str) -> Secret:
    """The first line of ``path`` (``what``: "webhook secret file", "serve token file"...);
    refused, like the secrets file, if group or others may use it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise SecretMissing(f"{what} {path} cannot be read: {reason}") from exc
    refuse_exposed(path, info.st_mode, what)
    if not text:
        raise SecretMissing(f"{what} {path} is empty")
    return Secret(text.splitlines()[0].strip())
