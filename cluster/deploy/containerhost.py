"""A ``runtime: container`` host: its files, the agent container (docker SDK), its heartbeat.

Like a systemd host, a container host is put back as it was when the new agent is not verified:
the container it replaces is stopped and set aside under ``<name>-previous`` while the new one
proves itself, then removed (verified) or renamed back and started (not verified), and the
files this run wrote are restored. ``invoke rollback`` runs the image the current container
replaced (a label remembers it), with the host's files as they are.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from cluster.deploy.diffs import file_diffs
from cluster.deploy.image import UID
from cluster.deploy.outcome import HostOutcome, RunContext, failure_reason, timed
from cluster.deploy.remote import BACKUP_SUFFIX, TMP_SUFFIX
from cluster.deploy.verify import POLL, VerifyFailed
from cluster.deploy.wanted import ROOT, USER, FileSpec, Wanted
from cluster.errors import ClusterError, ConfigError
from cluster.inventory.model import HostSpec
from cluster.secrets_file import read_secrets_file
from cluster.testhosts import engine
from cluster.units import layout
from cluster.units.agent_yaml import agent_config
from cluster.units.container import ContainerSpec, container_spec, docker_run_kwargs

FINGERPRINT = "claude-cluster.fingerprint"  # label: equal fingerprints, nothing to recreate
PREVIOUS_IMAGE = "claude-cluster.previous-image"  # label: what `rollback` returns to
ASIDE = "-previous"  # the replaced container's name suffix while its successor is verified
IDS = {ROOT: 0, USER: UID}
DIRS = (*layout.WRITABLE, layout.SSH_DIR, layout.ETC)
ROOTS = {layout.SSH_DIR, layout.ETC}  # root's, the agent's group may read: 0750 root:UID


class PutBackFailed(ClusterError):
    """The new container failed, and so did putting the previous one back."""


def on_host(root: Path, path: str) -> Path:
    """Where ``path`` of the container host is, seen from here (``root`` is its ``/``)."""
    return root / path.lstrip("/")


def deploy_container(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Converge one container host; every failure becomes a failed outcome naming its reason."""
    return _outcome(spec, ctx, lambda: _converge(spec, ctx.wanted(spec), ctx))


def rollback_container(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Run the image the current agent container replaced, verified (and put back if not)."""
    return _outcome(spec, ctx, lambda: _rollback(spec, ctx))


def _outcome(spec: HostSpec, ctx: RunContext, work: Callable[[], HostOutcome]) -> HostOutcome:
    started = time.monotonic()
    try:
        outcome = work()
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=failure_reason(exc, spec.name))
    ctx.progress(spec.name, outcome.status)
    return timed(outcome, started)


def _converge(spec: HostSpec, wanted: Wanted, ctx: RunContext) -> HostOutcome:
    settings, root = ctx.settings, ctx.settings.container_root
    image = spec.container_image or ctx.image
    if image is None:
        raise ConfigError(f"{spec.name}: no agent image (container_image or a built one)")
    files = [f for f in wanted.files if f.path != str(layout.UNIT_PATH)]
    stale = [f for f in files if _differs(root, f)]
    cspec = _spec(spec, ctx, image)
    print_ = _fingerprint(cspec, files, settings.container_network)
    client = engine.client()
    current = _find(client, cspec.name)
    actions = [f"write: {', '.join(f.path for f in stale)}"] if stale else []
    if current is None or current.status != "running" or current.labels.get(FINGERPRINT) != print_:
        actions.append(f"run: {image}")
    diffs = file_diffs(stale, partial(_read, root), wanted.secrets) if settings.diff else ()
    if settings.check or not actions:
        return HostOutcome(spec.name, "changed" if actions else "ok", tuple(actions), diffs=diffs)
    ctx.progress(spec.name, "write")
    written = _write(root, stale)
    if actions[-1].startswith("run"):
        labels = {FINGERPRINT: print_, PREVIOUS_IMAGE: _previous_image(current, image)}
        try:
            _replace(client, current, cspec, _run_kwargs(cspec, labels, ctx), ctx)
        except ClusterError as exc:
            back = _restore(written)
            if isinstance(exc, PutBackFailed):
                back = "the files before this run; the previous container could not be put back"
            reason = failure_reason(exc, spec.name)
            return HostOutcome(spec.name, "failed", tuple(actions), reason, diffs,
                               rolled_back=back)  # fmt: skip
    _drop_backups(written)
    return HostOutcome(spec.name, "changed", tuple(actions), diffs=diffs)


def _rollback(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    client = engine.client()
    name = layout.container_name(spec.name)
    current = _find(client, name)
    previous = current.labels.get(PREVIOUS_IMAGE, "") if current is not None else ""
    if current is None or not previous:
        return HostOutcome(spec.name, "failed", reason="no previous image to return to")
    if not engine.image_exists(client, previous):
        return HostOutcome(spec.name, "failed", reason=f"the previous image {previous} is gone")
    actions = (f"run: {previous}",)
    if ctx.settings.check:
        return HostOutcome(spec.name, "changed", actions)
    # A fingerprint no deploy computes: the next deploy runs the wanted image again.
    labels = {FINGERPRINT: f"rollback-{previous}", PREVIOUS_IMAGE: _image_of(current)}
    cspec = _spec(spec, ctx, previous)
    _replace(client, current, cspec, _run_kwargs(cspec, labels, ctx), ctx)
    return HostOutcome(spec.name, "changed", actions)


def _spec(spec: HostSpec, ctx: RunContext, image: str) -> ContainerSpec:
    config = agent_config(spec, **ctx.settings.agent)
    cspec = container_spec(config, image, f"{UID}:{UID}")
    return replace(cspec, name=layout.container_name(spec.name))


def _run_kwargs(cspec: ContainerSpec, labels: Mapping[str, str], ctx: RunContext) -> dict[str, Any]:
    root = ctx.settings.container_root
    env = read_secrets_file(on_host(root, str(layout.SECRETS_ENV)))
    kwargs = docker_run_kwargs(cspec, env, host_root=str(root))
    kwargs["labels"] = {**kwargs["labels"], **{k: v for k, v in labels.items() if v}}
    if ctx.settings.container_network:
        kwargs["network"] = ctx.settings.container_network
    return kwargs


def _replace(
    client: engine.Client,
    current: engine.Container | None,
    cspec: ContainerSpec,
    kwargs: dict[str, Any],
    ctx: RunContext,
) -> None:
    """Run ``kwargs`` in place of ``current`` and verify it; on failure put ``current`` back.

    ``current`` is stopped first (one agent of a name at a time) and kept aside, renamed,
    until the new container is verified.
    """
    name, agent = cspec.name, cspec.hostname
    aside = _set_aside(client, current, name, cspec.stop_timeout)
    ctx.progress(agent, "run")
    since = time.time()
    container = None
    try:
        with engine.translated(f"run {name}"):
            container = engine.run_container(client, **kwargs)
        ctx.progress(agent, "verify")
        _verify(container, agent, since, ctx)
    except ClusterError as failure:
        ctx.progress(agent, "rolling back")
        try:
            with engine.translated(f"put back {name}"):
                if container is not None:
                    container.remove(force=True)
                else:  # the run itself failed: a created, unstarted container may hold the name
                    for stray in client.containers.list(all=True, filters={"name": f"^{name}$"}):
                        stray.remove(force=True)
                if aside is not None:
                    aside.rename(name)
                    if current is not None and current.status == "running":  # as listed
                        aside.start()
        except ClusterError as exc:
            raise PutBackFailed(f"{failure}; {exc}") from failure
        raise
    if aside is not None:
        with engine.translated(f"remove {aside.name}"):
            aside.remove(force=True)


def _set_aside(
    client: engine.Client, current: engine.Container | None, name: str, stop_timeout: int
) -> engine.Container | None:
    with engine.translated(f"set aside {name}"):
        for stale in client.containers.list(all=True, filters={"name": f"^{name}{ASIDE}$"}):
            stale.remove(force=True)  # left by a run that died before it could clean up
        if current is None:
            return None
        current.stop(timeout=stop_timeout)  # SIGTERM: the agent releases what it holds
        current.rename(name + ASIDE)
        return current


def _image_of(container: engine.Container) -> str:
    return str(container.attrs.get("Config", {}).get("Image") or "")


def _previous_image(current: engine.Container | None, image: str) -> str:
    """What ``rollback`` should return to once ``image`` runs in place of ``current``."""
    if current is None:
        return ""
    before = _image_of(current)
    return before if before and before != image else current.labels.get(PREVIOUS_IMAGE, "")


def _find(client: engine.Client, name: str) -> engine.Container | None:
    with engine.translated(f"list {name}"):
        found = client.containers.list(all=True, filters={"name": f"^{name}$"})
    return found[0] if found else None


def _fingerprint(cspec: ContainerSpec, files: list[FileSpec], network: str | None) -> str:
    parts = [repr(cspec), str(network)] + [f"{f.path}={f.sha256}" for f in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _differs(root: Path, spec: FileSpec) -> bool:
    path = on_host(root, spec.path)
    try:
        stat = path.stat()
        data = path.read_bytes()
    except OSError:
        return True
    owner = (stat.st_mode & 0o7777, stat.st_uid, stat.st_gid)
    return owner != (spec.mode, IDS[spec.owner], IDS[spec.group]) or (
        hashlib.sha256(data).hexdigest() != spec.sha256
    )


def _read(root: Path, path: str) -> bytes | None:
    try:
        return on_host(root, path).read_bytes()
    except FileNotFoundError:
        return None


def _write(root: Path, files: list[FileSpec]) -> list[Path]:
    """Directories, then each file: the old one kept as a backup, a temp file of its final mode
    and owner renamed over it. Returns the paths written."""
    for directory in DIRS:
        path = on_host(root, str(directory))
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0 if directory in ROOTS else UID, UID)
        path.chmod(0o750 if directory in ROOTS else 0o700)
    written = []
    for spec in files:
        path = on_host(root, spec.path)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(spec.body.reveal().encode())
        os.chown(tmp, IDS[spec.owner], IDS[spec.group])
        tmp.chmod(spec.mode)
        backup = _backup(path)
        backup.unlink(missing_ok=True)  # a crashed run's: never restored in place of this one
        if path.exists():
            os.link(path, backup)  # the old inode, mode and owner kept as they were
        tmp.replace(path)
        written.append(path)
    return written


def _backup(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)  # as systemd hosts keep them


def _restore(written: list[Path]) -> str:
    """Put back the files this run wrote (a new one is removed); say what the host has now."""
    for path in written:
        if _backup(path).exists():
            _backup(path).replace(path)
        else:
            path.unlink(missing_ok=True)
    return "the container and the files before this run"


def _drop_backups(written: list[Path]) -> None:
    for path in written:
        _backup(path).unlink(missing_ok=True)


def _verify(container: engine.Container, agent: str, since: float, ctx: RunContext) -> None:
    """Poll until the container runs and a heartbeat of an agent started after ``since`` shows."""
    deadline = time.monotonic() + ctx.settings.verify_timeout
    last = "not checked yet"
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            last = f"container {container.status}"
        elif ctx.reader is None:
            return
        else:
            beat = ctx.reader.beat(agent)
            if beat is not None and beat.state in ("running", "paused"):
                if beat.started_at >= since - 1.0:
                    return
                last = f"heartbeat from an agent started before this run ({beat.pid})"
            else:
                last = "no heartbeat yet"
        time.sleep(POLL)
    tail = container.logs(tail=3).decode(errors="replace").strip().splitlines()
    detail = f"; logs: {tail[-1]}" if tail else ""
    limit = ctx.settings.verify_timeout
    raise VerifyFailed(agent, f"not verified within {limit:.0f}s: {last}{detail}")
