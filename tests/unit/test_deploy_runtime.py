"""The host-runtime contract's pure parts for both runtimes: plans, tags, rollback, preflight."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cluster.deploy.containerplan import (
    ContainerFacts,
    fingerprint,
    ownership,
    plan_container,
    plan_container_rollback,
    preflight_container,
)
from cluster.deploy.plan import plan_rollback
from cluster.deploy.runtime import NothingToRollBack, Plan
from cluster.deploy.wanted import FileSpec
from cluster.inventory.model import Thresholds
from cluster.units import layout
from cluster.units.container import ContainerSpec
from tests.unit.test_deploy_plan import RELEASE, converged, wanted

IMAGE = "claude-cluster-agent:0.1.0-abc"
CSPEC = ContainerSpec(image=IMAGE, hostname="agent-1")


def kinds(plan: Plan[Any]) -> list[str]:
    return [a.kind for a in plan.actions]


def files() -> tuple[FileSpec, ...]:
    return tuple(f for f in wanted().files if f.path != str(layout.UNIT_PATH))


def print_of(specs: tuple[FileSpec, ...]) -> str:
    return fingerprint(CSPEC, [(f.path, f.sha256) for f in specs], "ccc-net")


def running(specs: tuple[FileSpec, ...], **update: object) -> ContainerFacts:
    facts = ContainerFacts(
        host="agent-1", files={f.path: f.sha256 for f in specs},
        owners={f.path: ownership(f) for f in specs}, status="running",
        fingerprint=print_of(specs), image=IMAGE, images=frozenset({IMAGE}), cpus=8,
        memory_bytes=32 * 10**9, disk_free_bytes=100 * 10**9,
    )  # fmt: skip
    return replace(facts, **update)  # type: ignore[arg-type]


def test_a_converged_container_host_plans_nothing() -> None:
    specs = files()
    plan = plan_container(running(specs), specs, IMAGE, print_of(specs))
    assert plan.actions == () and not plan.changed


def test_a_fresh_container_host_writes_every_file_then_runs() -> None:
    specs = files()
    fresh = ContainerFacts(host="agent-1", files={}, owners={})
    plan = plan_container(fresh, specs, IMAGE, print_of(specs))
    assert kinds(plan) == ["write", "run"]
    assert plan.of("write") == tuple(f.path for f in specs)
    assert str(plan.actions[-1]) == f"run: {IMAGE}"


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"status": "exited"}, ["run"]),
        ({"status": None}, ["run"]),
        ({"fingerprint": "another"}, ["run"]),
    ],
)
def test_each_container_drift_plans_exactly_its_action(
    drift: dict[str, object], expected: list[str]
) -> None:
    specs = files()
    plan = plan_container(running(specs, **drift), specs, IMAGE, print_of(specs))
    assert kinds(plan) == expected


def test_a_file_of_another_mode_or_content_is_written() -> None:
    specs = files()
    config = str(layout.AGENT_CONFIG)
    facts = running(specs)
    for drift in ({"files": {**facts.files, config: "0" * 64}},
                  {"owners": {**facts.owners, config: (0o644, 0, 0)}}):  # fmt: skip
        plan = plan_container(replace(facts, **drift), specs, IMAGE, print_of(specs))
        assert plan.of("write") == (config,) and kinds(plan) == ["write"]


def test_tags_split_a_container_plan_as_a_systemd_one() -> None:
    specs = files()
    fresh = ContainerFacts(host="agent-1", files={}, owners={})
    plan = plan_container(fresh, specs, IMAGE, print_of(specs))
    assert kinds(plan.only(("config",))) == ["write"]
    assert kinds(plan.only(("service",))) == ["run"]
    assert kinds(plan.only(("code", "preflight"))) == []


def test_the_fingerprint_follows_the_files_the_host_has() -> None:
    specs = files()
    written = [(f.path, f.sha256) for f in specs]
    stale: list[tuple[str, str | None]] = [(p, None if i == 0 else d)
                                           for i, (p, d) in enumerate(written)]  # fmt: skip
    assert fingerprint(CSPEC, written, None) != fingerprint(CSPEC, stale, None)
    assert fingerprint(CSPEC, written, None) != fingerprint(CSPEC, written, "ccc-net")


def test_container_rollback_runs_the_replaced_image_or_says_why_not() -> None:
    specs = files()
    before = "claude-cluster-agent:0.0.9-abc"
    facts = running(specs, previous_image=before, images=frozenset({IMAGE, before}))
    plan = plan_container_rollback(facts)
    assert [str(a) for a in plan.actions] == [f"run: {before}"]
    with pytest.raises(NothingToRollBack, match=r"^no previous image to return to$"):
        plan_container_rollback(running(specs))
    with pytest.raises(NothingToRollBack, match="is gone"):
        plan_container_rollback(replace(facts, images=frozenset({IMAGE})))


def test_systemd_rollback_swaps_to_the_previous_release() -> None:
    want = wanted()
    old = "0.0.9-ffffffffffffffff"
    plan = plan_rollback(converged(want, releases=(old, RELEASE), previous=old))
    assert [str(a) for a in plan.actions] == [f"switch: {old}", "restart"]
    with pytest.raises(NothingToRollBack, match=r"\(current: " + RELEASE):
        plan_rollback(converged(want))


def test_container_preflight_names_a_missing_image_and_each_short_resource() -> None:
    specs = files()
    limits = Thresholds(min_cpus=4, min_memory_gb=16, min_disk_gb=20)
    assert preflight_container(running(specs), limits, IMAGE, "/") == []
    small = running(specs, cpus=2, memory_bytes=10**9, disk_free_bytes=10**9, images=frozenset())
    problems = {p.check: p.message for p in preflight_container(small, limits, IMAGE, "/srv")}
    assert set(problems) == {"image", "cpus", "memory", "disk"}
    assert problems["image"].startswith(f"{IMAGE} is not in the docker engine")
    assert "GB free under /srv" in problems["disk"]
