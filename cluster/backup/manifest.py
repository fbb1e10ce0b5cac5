"""manifest.json of a backup: what it holds, sha256 of every file, refs, and the secrets note."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cluster import __version__
from cluster.backup.errors import BackupError, ChecksumMismatch

MANIFEST = "manifest.json"
BUNDLE = "state.bundle"
FORMAT = 1
SECRETS = (
    "not included: ANTHROPIC_API_KEY, GITHUB_TOKEN, secrets files and SSH keys are never "
    "backed up"
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    names = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(name for name in names if name != MANIFEST)


def write_manifest(root: Path, *, source: str, refs: dict[str, str], created_at: str) -> None:
    """Checksum every file under ``root`` and write the manifest next to them."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "tool": {"name": "claude-code-cluster", "version": __version__},
        "created_at": created_at,
        "source": source,
        "secrets": SECRETS,
        "refs": dict(sorted(refs.items())),
        "files": {
            name: {"sha256": sha256_file(root / name), "size": (root / name).stat().st_size}
            for name in _files(root)
        },
    }
    (root / MANIFEST).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{root}: no {MANIFEST}: not a backup directory") from exc
    except (OSError, ValueError) as exc:
        raise ChecksumMismatch(str(root), [f"{MANIFEST} is unreadable: {exc}"]) from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ChecksumMismatch(str(root), [f"{MANIFEST}: unknown format (expected {FORMAT})"])
    if not isinstance(body.get("files"), dict) or not isinstance(body.get("refs"), dict):
        raise ChecksumMismatch(str(root), [f"{MANIFEST}: 'files' and 'refs' must be mappings"])
    return body


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every listed file present with its sha256, and no file the manifest does not list."""
    problems: list[str] = []
    listed: dict[str, Any] = manifest["files"]
    for name, entry in sorted(listed.items()):
        path = root / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            problems.append(f"{name}: path escapes the backup")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif not isinstance(entry, dict) or sha256_file(path) != entry.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest")
    problems += [f"{name}: not listed in the manifest" for name in _files(root)
                 if name not in listed]  # fmt: skip
    if BUNDLE not in listed:
        problems.append(f"{BUNDLE}: not listed in the manifest")
    if problems:
        raise ChecksumMismatch(str(root), problems)
