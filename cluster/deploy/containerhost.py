"""A ``runtime: container`` host: its files, the agent container (docker SDK), its heartbeat."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

from cluster.deploy.image import UID
from cluster.deploy.outcome import HostOutcome, RunContext
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
IDS = {ROOT: 0, USER: UID}
DIRS = (*layout.WRITABLE, layout.SSH_DIR, layout.ETC)


def container_name(host: str) -> str:
    return f"{layout.CONTAINER_NAME}-{host}"


def on_host(root: Path, path: str) -> Path:
    """Where ``path`` of the container host is, seen from here (``root`` is its ``/``)."""
    return root / path.lstrip("/")


def deploy_container(spec: HostSpec, ctx: RunContext) -> HostOutcome:
    """Converge one container host; every failure becomes a failed outcome naming its reason."""
    started = time.monotonic()
    try:
        outcome = _converge(spec, ctx.wanted(spec), ctx)
    except ClusterError as exc:
        outcome = HostOutcome(spec.name, "failed", reason=str(exc).removeprefix(f"{spec.name}: "))
    ctx.progress(spec.name, outcome.status)
    return replace(outcome, seconds=round(time.monotonic() - started, 2))


def _converge(spec: HostSpec, wanted: Wanted, ctx: RunContext) -> HostOutcome:
    settings, root = ctx.settings, ctx.settings.container_root
    image = spec.container_image or ctx.image
    if image is None:
        raise ConfigError(f"{spec.name}: no agent image (container_image or a built one)")
    files = [f for f in wanted.files if f.path != str(layout.UNIT_PATH)]
    stale = [f for f in files if _differs(root, f)]
    config = agent_config(spec, **settings.agent)
    cspec = replace(container_spec(config, image, f"{UID}:{UID}"), name=container_name(spec.name))
    print_ = _fingerprint(cspec, files, settings.container_network)
    client = engine.client()
    current = _find(client, cspec.name)
    actions = [f"write: {', '.join(f.path for f in stale)}"] if stale else []
    if current is None or current.status != "running" or current.labels.get(FINGERPRINT) != print_:
        actions.append(f"run: {image}")
    if settings.check or not actions:
        return HostOutcome(spec.name, "changed" if actions else "ok", tuple(actions))
    ctx.progress(spec.name, "write")
    _write(root, stale)
    if actions[-1].startswith("run"):
        ctx.progress(spec.name, "run")
        env = read_secrets_file(on_host(root, str(layout.SECRETS_ENV)))
        kwargs = docker_run_kwargs(cspec, env, host_root=str(root))
        kwargs["labels"] = {**kwargs["labels"], FINGERPRINT: print_}
        if settings.container_network:
            kwargs["network"] = settings.container_network
        since = time.time()
        with engine.translated(f"run {cspec.name}"):
            if current is not None:
                current.remove(force=True)
            container = client.containers.run(**kwargs)
        ctx.progress(spec.name, "verify")
        _verify(container, spec.name, since, ctx)
    return HostOutcome(spec.name, "changed", tuple(actions))


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


def _write(root: Path, files: list[FileSpec]) -> None:
    """Directories, then each file: a temp file of its final mode and owner, renamed."""
    for directory in DIRS:
        path = on_host(root, str(directory))
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0 if directory == layout.ETC else UID, UID)
        path.chmod(0o750 if directory == layout.ETC else 0o700)
    for spec in files:
        path = on_host(root, spec.path)
        tmp = path.with_name(path.name + ".deploy-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(spec.body.reveal().encode())
        os.chown(tmp, IDS[spec.owner], IDS[spec.group])
        tmp.chmod(spec.mode)
        tmp.replace(path)


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
