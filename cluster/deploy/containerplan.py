"""A container host's facts, preflight and plan: pure comparisons, converged means empty."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cluster.deploy.image import UID
from cluster.deploy.preflight import Problem, check_resources
from cluster.deploy.runtime import Action, NothingToRollBack, Plan
from cluster.deploy.wanted import ROOT, USER, FileSpec
from cluster.inventory.model import Thresholds
from cluster.units.container import ContainerSpec

ContainerKind = Literal["write", "run"]
TAG_OF: dict[str, str] = {"write": "config", "run": "service"}  # the image comes with `run`
IDS = {ROOT: 0, USER: UID}
Ownership = tuple[int, int, int]  # mode, uid, gid


@dataclass(frozen=True)
class ContainerFacts:
    """A container host as deploy read it: its files, its agent container, the engine."""

    host: str
    files: Mapping[str, str | None]  # path -> sha256; None: missing, "": unreadable
    owners: Mapping[str, Ownership | None]
    status: str | None = None  # the agent container's; None: there is none
    fingerprint: str = ""  # its fingerprint label (what it was run from)
    image: str = ""  # the image it runs
    previous_image: str = ""  # its label: what it replaced, where rollback returns
    images: frozenset[str] = frozenset()  # of the images asked about, those the engine has
    cpus: int = 0
    memory_bytes: int = 0
    disk_free_bytes: int = 0  # under the container host's root
    clock_skew_s: float = 0.0  # the engine shares the control host's clock
    clock_uncertainty_s: float = 0.0

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    @property
    def disk_free_gb(self) -> float:
        return self.disk_free_bytes / 1e9


def ownership(spec: FileSpec) -> Ownership:
    return spec.mode, IDS[spec.owner], IDS[spec.group]


def fingerprint(
    cspec: ContainerSpec, files: Sequence[tuple[str, str | None]], network: str | None
) -> str:
    """What decides the container: its spec, its network and its files' ``(path, sha256)``;
    equal fingerprints, nothing to recreate."""
    parts = [repr(cspec), str(network)] + [f"{path}={digest}" for path, digest in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def preflight_container(
    facts: ContainerFacts, thresholds: Thresholds, image: str, root: str
) -> list[Problem]:
    """Every reason the host is not ready: the image it is to run is missing, or resources."""
    problems: list[Problem] = []

    def problem(check: str, message: str) -> None:
        problems.append(Problem(facts.host, check, message))

    if image not in facts.images:
        problem("image", f"{image} is not in the docker engine (set container_image to a local "
                         "image, or leave it unset: deploy builds one)")  # fmt: skip
    check_resources(facts, thresholds, problem, where=root)
    return problems


def plan_container(
    facts: ContainerFacts, files: Sequence[FileSpec], image: str, print_: str
) -> Plan[ContainerKind]:
    """``write`` the files that differ (content, mode or owner), then ``run`` ``image`` when
    the container is missing, stopped, or was run from another fingerprint (``print_``)."""
    actions: list[Action[ContainerKind]] = []
    stale = tuple(f.path for f in files if _differs(facts, f))
    if stale:
        actions.append(Action("write", stale))
    if facts.status != "running" or facts.fingerprint != print_:
        actions.append(Action("run", (image,)))
    return Plan(facts.host, tuple(actions), TAG_OF)


def _differs(facts: ContainerFacts, spec: FileSpec) -> bool:
    seen = facts.files.get(spec.path), facts.owners.get(spec.path)
    return seen != (spec.sha256, ownership(spec))


def plan_container_rollback(facts: ContainerFacts) -> Plan[ContainerKind]:
    """``invoke rollback``: run the image the current container replaced (its label says)."""
    if facts.status is None or not facts.previous_image:
        raise NothingToRollBack("no previous image to return to")
    if facts.previous_image not in facts.images:
        raise NothingToRollBack(f"the previous image {facts.previous_image} is gone")
    return Plan(facts.host, (Action("run", (facts.previous_image,)),), TAG_OF)
