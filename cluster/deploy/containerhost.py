"""A ``runtime: container`` host: the host runtime over the docker engine (files, a container).

Like a systemd host, a container host is put back as it was when the new agent is not verified:
the container it replaces is stopped and set aside under ``<name>-previous`` while the new one
proves itself, then removed (verified) or renamed back and started (``undo``), and the files
this run wrote are restored from their backups. ``invoke rollback`` runs the image the current
container replaced (a label remembers it), with the host's files as they are.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, assert_never

from cluster.deploy.containerfiles import (
    backup_of,
    free_bytes,
    on_host,
    owner_of,
    read_file,
    restore_files,
    sha256_of,
    write_files,
)
from cluster.deploy.containerplan import (
    ContainerFacts,
    ContainerKind,
    fingerprint,
    plan_container,
    plan_container_rollback,
    preflight_container,
)
from cluster.deploy.diffs import file_diffs
from cluster.deploy.image import UID
from cluster.deploy.outcome import RunContext
from cluster.deploy.preflight import Problem
from cluster.deploy.runtime import Action, Plan
from cluster.deploy.verify import POLL, VerifyFailed
from cluster.deploy.wanted import FileSpec, Wanted
from cluster.errors import ClusterError, ConfigError
from cluster.inventory.model import HostSpec
from cluster.secrets_file import read_secrets_file
from cluster.transport import docker as engine
from cluster.units import layout
from cluster.units.agent_yaml import agent_config
from cluster.units.container import ContainerSpec, container_spec, docker_run_kwargs

FINGERPRINT = "claude-cluster.fingerprint"  # label: equal fingerprints, nothing to recreate
PREVIOUS_IMAGE = "claude-cluster.previous-image"  # label: what `rollback` returns to
ASIDE = "-previous"  # the replaced container's name suffix while its successor is verified


@contextlib.contextmanager
def container_host(
    spec: HostSpec, ctx: RunContext, wanted: Wanted | None
) -> Iterator[ContainerHost]:
    """The runtime of ``spec`` for one run, the engine's client open (``wanted`` None: rollback)."""
    image = spec.container_image or ctx.image
    if wanted is not None and image is None:
        raise ConfigError(f"{spec.name}: no agent image (container_image or a built one)")
    client = engine.client()
    try:
        yield ContainerHost(client, spec, ctx, wanted, image or "")
    finally:
        client.close()


@dataclass
class ContainerHost:
    """A container host as a HostRuntime[ContainerFacts, ContainerKind]; it remembers the
    container it found, the one it set aside, the one it ran and the files it wrote."""

    client: engine.Client
    spec: HostSpec
    ctx: RunContext
    wanted: Wanted | None
    image: str  # what a deploy runs ("" for a rollback)
    seen: ContainerFacts | None = None  # what facts() read
    current: engine.Container | None = None
    aside: engine.Container | None = None
    started: engine.Container | None = None
    ran: bool = False  # `run` set the current container aside: undo puts it back
    written: list[Path] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.ctx.settings.container_root

    @property
    def name(self) -> str:
        return layout.container_name(self.spec.name)

    @property
    def files(self) -> tuple[FileSpec, ...]:
        """The wanted files but the unit file (none for a rollback)."""
        wanted = self.wanted.files if self.wanted is not None else ()
        return tuple(f for f in wanted if f.path != str(layout.UNIT_PATH))

    def facts(self) -> ContainerFacts:
        files = {f.path: sha256_of(on_host(self.root, f.path)) for f in self.files}
        owners = {f.path: owner_of(on_host(self.root, f.path)) for f in self.files}
        self.current = _find(self.client, self.name)
        labels = self.current.labels if self.current is not None else {}
        previous = labels.get(PREVIOUS_IMAGE, "")
        asked = {i for i in (self.image, previous) if i}
        with engine.translated("info"):
            info = self.client.info()
        self.seen = ContainerFacts(
            host=self.spec.name, files=files, owners=owners,
            status=self.current.status if self.current is not None else None,
            fingerprint=labels.get(FINGERPRINT, ""), previous_image=previous,
            image=_image_of(self.current) if self.current is not None else "",
            images=frozenset(i for i in asked if engine.image_exists(self.client, i)),
            cpus=int(info.get("NCPU") or 0), memory_bytes=int(info.get("MemTotal") or 0),
            disk_free_bytes=free_bytes(self.root),
        )  # fmt: skip
        return self.seen

    def preflight(self, facts: ContainerFacts) -> list[Problem]:
        return preflight_container(facts, self.spec.thresholds, self.image, str(self.root))

    def plan(self, facts: ContainerFacts) -> Plan[ContainerKind]:
        return plan_container(facts, self.files, self.image, self._fingerprint())

    def rollback_plan(self, facts: ContainerFacts) -> Plan[ContainerKind]:
        return plan_container_rollback(facts)

    def diffs(self, plan: Plan[ContainerKind]) -> tuple[str, ...]:
        secrets = self.wanted.secrets if self.wanted is not None else ()
        stale = [f for f in self.files if f.path in plan.of("write")]
        return file_diffs(stale, partial(read_file, self.root), secrets)

    def apply(self, plan: Plan[ContainerKind], action: Action[ContainerKind]) -> None:
        match action.kind:
            case "write":
                chosen = [f for f in self.files if f.path in action.items]
                write_files(self.root, chosen, self.written)
            case "run":
                self._run(plan, action.items[0])
            case _:
                assert_never(action.kind)

    def verify(self, plan: Plan[ContainerKind], since: float) -> None:
        """The container ``run`` started runs, and beats from an agent started since ``since``."""
        if self.started is not None:
            _verify(self.started, self.spec.name, since, self.ctx)

    def settle(self, plan: Plan[ContainerKind]) -> None:
        if self.aside is not None:
            with engine.translated(f"remove {self.aside.name}"):
                self.aside.remove(force=True)
        for path in self.written:
            backup_of(path).unlink(missing_ok=True)

    def undo(self, plan: Plan[ContainerKind], facts: ContainerFacts) -> str:
        """Remove what ``run`` started, rename the container set aside back (started again if it
        ran), and restore the files written."""
        said = "the container and the files before this run"
        if self.ran:
            try:
                self._put_back()
            except ClusterError as exc:
                said = (
                    "the files before this run; the previous container could not be put "
                    f"back: {exc}"
                )
        try:
            restore_files(self.written)
        except OSError as exc:
            return f"rollback failed too: {exc}"
        return said

    def _fingerprint(self, written: Collection[str] | None = None) -> str:
        """Of the wanted files, or (``written``) of the files as the host has them once this
        run wrote those: a run that ``--tags`` kept from writing says so in its label."""
        files: list[tuple[str, str | None]] = [(f.path, f.sha256) for f in self.files]
        if written is not None and self.seen is not None:
            seen = self.seen.files
            files = [(path, sha if path in written else seen.get(path)) for path, sha in files]
        return fingerprint(self._spec(self.image), files, self.ctx.settings.container_network)

    def _spec(self, image: str) -> ContainerSpec:
        config = agent_config(self.spec, **self.ctx.settings.agent)
        return replace(container_spec(config, image, f"{UID}:{UID}"), name=self.name)

    def _labels(self, plan: Plan[ContainerKind], image: str) -> dict[str, str]:
        """A deploy's: its fingerprint, and what it replaces; a rollback's (no wanted state): a
        fingerprint no deploy computes (the next deploy runs the wanted image again), and the
        image it replaces, so that a second rollback goes forward again."""
        current = self.current
        if self.wanted is None:
            before = _image_of(current) if current is not None else ""
            return {FINGERPRINT: f"rollback-{image}", PREVIOUS_IMAGE: before}
        print_ = self._fingerprint(plan.of("write"))
        return {FINGERPRINT: print_, PREVIOUS_IMAGE: _previous_image(current, image)}

    def _run(self, plan: Plan[ContainerKind], image: str) -> None:
        """Stop the current container and set it aside (one agent of a name at a time), then
        run ``image`` in its place."""
        cspec = self._spec(image)
        kwargs = _run_kwargs(cspec, self._labels(plan, image), self.ctx)
        self.aside = _set_aside(self.client, self.current, self.name, cspec.stop_timeout)
        self.ran = True  # from here on undo puts back (not when setting aside failed)
        with engine.translated(f"run {self.name}"):
            self.started = engine.run_container(self.client, **kwargs)

    def _put_back(self) -> None:
        with engine.translated(f"put back {self.name}"):
            if self.started is not None:
                self.started.remove(force=True)
            else:  # the run itself failed: a created, unstarted container may hold the name
                strays = self.client.containers.list(all=True, filters={"name": f"^{self.name}$"})
                for stray in strays:
                    stray.remove(force=True)
            if self.aside is not None:
                self.aside.rename(self.name)
                if self.current is not None and self.current.status == "running":  # as listed
                    self.aside.start()


def _run_kwargs(cspec: ContainerSpec, labels: Mapping[str, str], ctx: RunContext) -> dict[str, Any]:
    root = ctx.settings.container_root
    env = read_secrets_file(on_host(root, str(layout.SECRETS_ENV)))
    kwargs = docker_run_kwargs(cspec, env, host_root=str(root))
    kwargs["labels"] = {**kwargs["labels"], **{k: v for k, v in labels.items() if v}}
    if ctx.settings.container_network:
        kwargs["network"] = ctx.settings.container_network
    return kwargs


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


def _verify(container: engine.Container, agent: str, since: float, ctx: RunContext) -> None:
    """Poll until the container runs and a heartbeat of an agent started after ``since`` shows."""
    deadline = time.monotonic() + ctx.settings.verify_timeout
    last = "not checked yet"
    while time.monotonic() < deadline:
        with engine.translated(f"inspect {container.name}"):
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
    with engine.translated(f"logs of {container.name}"):
        tail = container.logs(tail=3).decode(errors="replace").strip().splitlines()
    detail = f"; logs: {tail[-1]}" if tail else ""
    limit = ctx.settings.verify_timeout
    raise VerifyFailed(agent, f"not verified within {limit:.0f}s: {last}{detail}")
