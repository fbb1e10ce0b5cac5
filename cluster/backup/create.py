"""``backup``: bundle every ref, copy inventory and non-secret config, manifest, verify, prune."""

from __future__ import annotations

import shutil
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from filelock import FileLock
from rich.console import Console

from cluster.backup import bundle
from cluster.backup.errors import BackupError
from cluster.backup.manifest import BUNDLE, write_manifest
from cluster.backup.prune import TARBALL, backup_name, prune
from cluster.backup.settings import BackupSettings
from cluster.backup.source import SshRepo, parse_state, write_bundle
from cluster.console import StepProgress
from cluster.inventory import load_inventory
from cluster.inventory.load import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE
from cluster.inventory.schema import secret_paths
from cluster.state import yamlio
from cluster.state.ids import MAIN
from cluster.state.settings import SETTINGS_FILE

LOCK_FILE = ".backup.lock"


@dataclass(frozen=True)
class BackupOutcome:
    path: Path
    refs: dict[str, str]
    files: list[str]
    size: int
    pruned: list[Path] = field(default_factory=list)


def create_backup(settings: BackupSettings, now: float | None = None, *,
                  console: Console | None = None) -> BackupOutcome:  # fmt: skip
    """Write one backup under ``settings.dest``, verify it, then prune older ones.

    With a ``console``, each step is drawn as progress there (a bar, or plain lines).
    """
    now = time.time() if now is None else now
    url = settings.state_url()
    source = parse_state(url)
    key, known = settings.ssh_access() if isinstance(source, SshRepo) else (None, None)
    configs = _read_configs(settings.config)  # refuse secrets before anything is written
    dest = settings.dest
    dest.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest / LOCK_FILE)), StepProgress(console, "backup", total=5) as steps:
        name = backup_name(dest, now)
        partial = dest / f".partial-{name}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        try:
            with steps.step("bundle every ref of the state repo"):
                write_bundle(source, partial / BUNDLE, key, known, settings.connect_timeout)
            with steps.step("verify the bundle"):
                bundle.verify(partial / BUNDLE)
                refs = bundle.list_heads(partial / BUNDLE)
                if MAIN not in refs:
                    raise BackupError(f"{source}: the bundle has no {MAIN}, so it is no "
                                      "state repo's backup (is --state the state repo?)")
            with steps.step("copy the config and inventory, write the manifest"):
                _write_config(partial, partial / BUNDLE, configs, settings.inventory)
                stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                write_manifest(partial, refs=refs, created_at=stamp,
                               source=str(source) if isinstance(source, SshRepo) else url)
                files = sorted(p.relative_to(partial).as_posix() for p in partial.rglob("*")
                               if p.is_file())  # fmt: skip
            with steps.step(f"publish {name}"):
                final = _publish(partial, dest / name, settings.tarball)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        with steps.step("prune old backups"):
            size = final.stat().st_size if final.is_file() else sum(
                p.stat().st_size for p in final.rglob("*") if p.is_file())
            pruned = prune(dest, settings.keep_days, settings.keep, now, protect=final)
    return BackupOutcome(final, refs, files, size, pruned)


def _read_configs(paths: tuple[Path, ...]) -> dict[str, bytes]:
    """Extra config files: YAML mappings with nothing that looks like a secret, or refused."""
    out: dict[str, bytes] = {}
    for path in paths:
        try:
            data = path.read_bytes()
            doc = yamlio.load_strict(data.decode("utf-8"))[0]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise BackupError(f"config file {path}: cannot read it as YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise BackupError(f"config file {path}: not a YAML mapping (is it a secrets file?)")
        found = secret_paths(doc)
        if found:
            raise BackupError(f"config file {path}: {', '.join(found)} look like secrets; "
                              "secrets are never backed up: move them to the secrets file")
        if path.name in out:
            raise BackupError(f"config file {path}: a second file named {path.name}")
        out[path.name] = data
    return out


def _write_config(root: Path, state_bundle: Path, configs: dict[str, bytes],
                  inventory: Path | None) -> None:
    config = root / "config"
    config.mkdir()
    settings = bundle.file_at(state_bundle, MAIN, SETTINGS_FILE)
    if settings is not None:
        (config / SETTINGS_FILE).write_bytes(settings)
    for name, data in configs.items():
        if (config / name).exists():
            raise BackupError(f"config file {name}: clashes with main's {SETTINGS_FILE}")
        (config / name).write_bytes(data)
    if inventory is not None:
        load_inventory(inventory)  # validates, and refuses keys or values that look secret
        target = root / "inventory"
        target.mkdir()
        for name in (HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE):  # only these: never keys
            if (inventory / name).is_file():
                shutil.copyfile(inventory / name, target / name)


def _publish(partial: Path, final: Path, tarball: bool) -> Path:
    if not tarball:
        partial.rename(final)
        return final
    target = final.with_name(final.name + TARBALL)
    temp = target.with_name(f".partial-{target.name}")
    try:
        with tarfile.open(temp, "w:gz") as archive:
            archive.add(str(partial), arcname=final.name)
        temp.rename(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    shutil.rmtree(partial)
    return target
