"""The pure planner: a converged host plans nothing, each drift plans exactly its action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cluster.deploy.facts import HostFacts
from cluster.deploy.plan import Plan, plan_host
from cluster.deploy.wanted import MULTIPLEX_SSH_CONFIG, Wanted, wanted_state
from cluster.deploy.wheels import WheelSet
from cluster.inventory.model import HostSpec
from cluster.secret import Secret
from cluster.units import layout

SECRETS = {"ANTHROPIC_API_KEY": "sk-ant-plan-0123456789", "GITHUB_TOKEN": "ghp_plan_abcdef01"}
DEPLOY_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ib2R5\n-----END"
MANIFEST = {"claude_code_cluster-0.1.0-py3-none-any.whl": "a" * 64, "pip-24.0-py3.whl": "b" * 64}
STATE = "ssh://root@10.0.0.2/srv/state.git"
RELEASE = "0.1.0-0123456789abcdef"
UNIT = str(layout.UNIT_PATH)
CONFIG = str(layout.AGENT_CONFIG)
ENV = str(layout.SECRETS_ENV)


def wanted(**agent: Any) -> Wanted:
    host = HostSpec(name="agent-1", hostname="127.0.0.1", username="root",
                    specialties=("backend",), state_repo=STATE)  # fmt: skip
    wheels = WheelSet(Path("/cache"), "0.1.0", "0123456789abcdef", dict(MANIFEST), built=False)
    secrets = {name: Secret(value) for name, value in SECRETS.items()}
    known = "state ssh-ed25519 AAAA\n"
    return wanted_state(host, wheels, secrets, agent, Secret(DEPLOY_KEY), known)


def converged(want: Wanted, **update: Any) -> HostFacts:
    owners: dict[str, tuple[int, str, str] | None] = {f.path: f.ownership for f in want.files}
    owners.update({d.path: d.ownership for d in want.dirs})
    facts = HostFacts(
        host=want.host, python=(3, 11, 2), venv=True, pid1="systemd", systemd_booted=True,
        systemctl=True, releases=(RELEASE,), current=RELEASE, owners=owners,
        unit={"ActiveState": "active", "UnitFileState": "enabled", "MainPID": "42"},
        user_home=str(layout.STATE_DIR), files={f.path: f.sha256 for f in want.files},
        wheels=dict(MANIFEST),
    )  # fmt: skip
    return facts.model_copy(update=update)


def kinds(plan: Plan) -> list[str]:
    return [a.kind for a in plan.actions]


def test_a_converged_host_plans_nothing() -> None:
    want = wanted()
    plan = plan_host(converged(want), want)
    assert plan.actions == () and not plan.changed


def test_a_fresh_host_plans_every_step_in_order() -> None:
    want = wanted()
    fresh = HostFacts(host="agent-1", python=(3, 11, 2), venv=True)
    assert kinds(plan_host(fresh, want)) == [
        "prepare", "push_wheels", "install", "switch", "write", "daemon_reload", "enable",
        "restart",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"user_home": None}, ["prepare"]),
        ({"unit": {"ActiveState": "failed", "UnitFileState": "enabled"}}, ["restart"]),
        ({"unit": {"ActiveState": "active", "UnitFileState": "disabled"}}, ["enable"]),
        ({"current": "0.0.9-ffffffffffffffff"}, ["switch", "restart"]),
    ],
)
def test_each_drift_plans_exactly_its_action(drift: dict[str, Any], expected: list[str]) -> None:
    want = wanted()
    assert kinds(plan_host(converged(want, **drift), want)) == expected


def test_a_changed_config_writes_it_and_restarts() -> None:
    want = wanted()
    files = {**converged(want).files, CONFIG: "0" * 64}
    plan = plan_host(converged(want, files=files), want)
    assert kinds(plan) == ["write", "restart"]
    assert plan.of("write") == (CONFIG,)
    assert plan.of("restart") == (f"{CONFIG} changed",)


def test_a_changed_unit_file_also_reloads_systemd() -> None:
    want = wanted()
    files = {**converged(want).files, UNIT: None}
    plan = plan_host(converged(want, files=files), want)
    assert kinds(plan) == ["write", "daemon_reload", "restart"]


def test_a_wrong_mode_on_the_secrets_file_rewrites_only_it() -> None:
    want = wanted()
    owners = {**converged(want).owners, ENV: (0o644, "root", "root")}
    plan = plan_host(converged(want, owners=owners), want)
    assert plan.of("write") == (ENV,)


def test_a_missing_release_pushes_only_missing_wheels_and_installs() -> None:
    want = wanted()
    wheels: dict[str, str | None] = {"pip-24.0-py3.whl": "b" * 64}
    plan = plan_host(converged(want, releases=(), current=None, wheels=wheels), want)
    assert kinds(plan) == ["push_wheels", "install", "switch", "restart"]
    assert plan.of("push_wheels") == ("claude_code_cluster-0.1.0-py3-none-any.whl",)


def test_an_installed_release_is_not_pushed_again() -> None:
    want = wanted()
    plan = plan_host(converged(want, wheels={}), want)
    assert plan.actions == ()


def test_old_releases_beyond_keep_are_pruned_never_current_or_previous() -> None:
    want = wanted()
    old = ("0.0.1-1", "0.0.2-2", "0.0.3-3", "0.0.4-4")
    facts = converged(want, releases=(*old, RELEASE), previous="0.0.1-1")
    pruned = plan_host(facts, want, keep_releases=3).of("prune")
    assert pruned == ("0.0.2-2",)  # the oldest others go; "previous" is never counted out
    assert RELEASE not in pruned and "0.0.1-1" not in pruned


def test_tags_keep_only_their_actions() -> None:
    want = wanted()
    fresh = HostFacts(host="agent-1", python=(3, 11, 2), venv=True)
    assert kinds(plan_host(fresh, want).only(("config",))) == ["write"]
    assert kinds(plan_host(fresh, want).only(("service",))) == [
        "daemon_reload", "enable", "restart",
    ]  # fmt: skip


def test_secrets_never_appear_in_plan_text() -> None:
    want = wanted(executors=["claude"], forge="github")
    env = next(f for f in want.files if f.path == ENV)
    assert all(value in env.body.reveal() for value in SECRETS.values())  # both are written
    fresh = HostFacts(host="agent-1", python=(3, 11, 2), venv=True)
    plan = plan_host(fresh, want)
    text = "\n".join(str(a) for a in plan.actions) + repr(plan) + repr(want)
    for value in (*SECRETS.values(), "c2VjcmV0LWtleS1ib2R5"):
        assert value not in text
    assert all(value not in f.shown for f in want.files for value in SECRETS.values())
    assert ENV in text  # the file is named, its contents are not


def test_the_optional_ssh_config_is_roots_and_multiplexes_in_the_private_tmp() -> None:
    host = HostSpec(name="agent-1", hostname="127.0.0.1", username="root",
                    specialties=("backend",), state_repo=STATE)  # fmt: skip
    wheels = WheelSet(Path("/cache"), "0.1.0", "0123456789abcdef", dict(MANIFEST), built=False)
    secrets = {name: Secret(value) for name, value in SECRETS.items()}
    want = wanted_state(host, wheels, secrets, {}, ssh_config=MULTIPLEX_SSH_CONFIG)
    config = [f for f in want.files if f.path == str(layout.SSH_DIR / "config")]
    assert [(f.mode, f.owner, f.group) for f in config] == [(0o644, "root", "root")]
    assert "ControlMaster auto" in config[0].shown
    assert "ControlPath /tmp/" in config[0].shown  # ~/.ssh is read-only to the agent
    assert not any(f.path.endswith("/config") for f in wanted().files)  # off by default


def test_the_service_user_owns_no_secret_and_nothing_ssh_reads() -> None:
    user = layout.SERVICE_USER
    want = wanted_state(*_parts(), Secret(DEPLOY_KEY), "k\n", ssh_config=MULTIPLEX_SSH_CONFIG)
    owned = {f.path: f.ownership for f in want.files} | {d.path: d.ownership for d in want.dirs}
    ssh = layout.SSH_DIR
    assert owned[ENV] == (0o600, "root", "root")  # systemd reads it, as root
    assert owned[str(ssh / "id_ed25519")] == (0o640, "root", user)  # the agent reads it
    assert owned[str(ssh / "known_hosts")] == (0o644, "root", "root")
    assert owned[str(ssh)] == (0o750, "root", user)  # nothing the agent can add or replace
    assert not [
        path
        for path, (_, owner, _) in owned.items()
        if owner == user and (path.startswith(str(ssh)) or path.startswith("/etc"))
    ]
    # A host deployed before keeps converging: its old ownership is planned away, once.
    old = {**converged(want).owners, ENV: (0o600, user, user), str(ssh): (0o700, user, user)}
    plan = plan_host(converged(want, owners=old), want)
    assert kinds(plan) == ["prepare", "write", "restart"] and plan.of("write") == (ENV,)


def _parts() -> tuple[HostSpec, WheelSet, dict[str, Secret], dict[str, Any]]:
    host = HostSpec(name="agent-1", hostname="127.0.0.1", username="root",
                    specialties=("backend",), state_repo=STATE)  # fmt: skip
    wheels = WheelSet(Path("/cache"), "0.1.0", "0123456789abcdef", dict(MANIFEST), built=False)
    return host, wheels, {name: Secret(value) for name, value in SECRETS.items()}, {}


@pytest.mark.parametrize(
    ("agent", "written"),
    [
        ({}, set()),  # command executor, local forge: no secret at all
        ({"executors": ["claude"]}, {"ANTHROPIC_API_KEY"}),
        ({"executors": ["claude-code"]}, {"ANTHROPIC_API_KEY"}),  # used when given
        ({"forge": "github"}, {"GITHUB_TOKEN"}),
        ({"executors": ["command", "claude"], "forge": "github"}, set(SECRETS)),
    ],
)
def test_a_host_gets_only_the_secrets_its_agent_uses(
    agent: dict[str, Any], written: set[str]
) -> None:
    env = next(f for f in wanted(**agent).files if f.path == ENV)
    names = {line.split("=")[0] for line in env.body.reveal().splitlines() if "=" in line}
    assert names == written
    assert env.mode == 0o600 and env.secret
