"""A systemd host's plan: a pure comparison of its facts with its wanted state; converged
means empty."""

from __future__ import annotations

from typing import Literal

from cluster.deploy import runtime
from cluster.deploy.facts import HostFacts
from cluster.deploy.runtime import NothingToRollBack
from cluster.deploy.wanted import Wanted
from cluster.deploy.wheels import diff_manifest
from cluster.units import layout

Kind = Literal[
    "prepare",
    "push_wheels",
    "push_cli",
    "install",
    "link_cli",
    "switch",
    "write",
    "daemon_reload",
    "enable",
    "restart",
    "prune",
    "prune_cli",
]
Action = runtime.Action[Kind]  # a systemd host's action and plan
Plan = runtime.Plan[Kind]
TAG_OF: dict[str, str] = {
    "prepare": "code", "push_wheels": "code", "push_cli": "code", "install": "code",
    "link_cli": "code", "switch": "code", "prune": "code", "prune_cli": "code",
    "write": "config", "daemon_reload": "service", "enable": "service", "restart": "service",
}  # fmt: skip


def plan_host(facts: HostFacts, wanted: Wanted, keep_releases: int = 3) -> Plan:
    """The actions that take ``facts`` to ``wanted``, in the order they must run."""
    actions: list[Action] = []
    if facts.user_home != str(layout.STATE_DIR) or any(
        facts.owners.get(d.path) != d.ownership for d in wanted.dirs
    ):
        actions.append(Action("prepare", (layout.SERVICE_USER,)))
    installed = wanted.release in facts.releases
    cli = wanted.cli
    if not installed:
        push = diff_manifest(wanted.wheels.manifest, _known(facts.wheels)).push
        if push:
            actions.append(Action("push_wheels", push))
    if cli is not None and facts.cli.get(cli.install_name) != cli.sha256:
        actions.append(Action("push_cli", (cli.name,)))
    if not installed:
        actions.append(Action("install", (wanted.release,)))
    relink = cli is not None and (
        not installed or facts.cli_links.get(wanted.release) != cli.install_name
    )
    if cli is not None and relink:
        actions.append(Action("link_cli", (cli.install_name,)))
    switch = facts.current != wanted.release
    if switch:
        actions.append(Action("switch", (wanted.release,)))
    written = tuple(
        f.path
        for f in wanted.files
        if facts.files.get(f.path) != f.sha256 or facts.owners.get(f.path) != f.ownership
    )
    if written:
        actions.append(Action("write", written))
    prune = _prunable(facts, wanted.release, keep_releases)
    if prune:
        actions.append(Action("prune", prune))
    spare_cli = _unused_cli(facts, wanted, prune)
    if spare_cli:
        actions.append(Action("prune_cli", spare_cli))
    if str(layout.UNIT_PATH) in written:
        actions.append(Action("daemon_reload"))
    if facts.unit.get("UnitFileState") != "enabled":
        actions.append(Action("enable", (layout.UNIT_NAME,)))
    reasons = _restart_reasons(facts, wanted, written, switch, relink)
    if reasons:
        actions.append(Action("restart", reasons))
    return Plan(wanted.host, tuple(actions), TAG_OF)


def plan_rollback(facts: HostFacts) -> Plan:
    """``invoke rollback``: switch to the ``previous`` release and restart."""
    if facts.previous is None or facts.previous not in facts.releases:
        raise NothingToRollBack(f"no previous release to return to (current: {facts.current})")
    return Plan(facts.host, (Action("switch", (facts.previous,)), Action("restart")), TAG_OF)


def _known(wheels: dict[str, str | None]) -> dict[str, str]:
    return {name: digest for name, digest in wheels.items() if digest}


def _prunable(facts: HostFacts, release: str, keep: int) -> tuple[str, ...]:
    """Releases beyond the newest ``keep``; never the wanted one, current or previous."""
    spare = {release, facts.current, facts.previous}
    others = [r for r in facts.releases if r not in spare]
    room = max(keep - len({release, facts.current} - {None}), 0)
    return tuple(others[: max(len(others) - room, 0)])


def _unused_cli(facts: HostFacts, wanted: Wanted, pruned: tuple[str, ...]) -> tuple[str, ...]:
    """CLI installs no release keeps: neither the wanted one nor one a kept release links to
    (links as the host has them before this run, so undoing this run's links stays possible)."""
    kept = {facts.cli_links.get(r) for r in facts.releases if r not in pruned}
    kept |= {facts.cli_links.get(r) for r in (facts.current, facts.previous) if r}
    if wanted.cli is not None:
        kept.add(wanted.cli.install_name)
    return tuple(name for name in sorted(facts.cli) if name not in kept)


def _restart_reasons(
    facts: HostFacts, wanted: Wanted, written: tuple[str, ...], switch: bool, relinked: bool
) -> tuple[str, ...]:
    reasons = [f"{path} changed" for path in written if _restarts(wanted, path)]
    if switch:
        reasons.append(f"release {wanted.release}")
    elif relinked and wanted.cli is not None:
        reasons.append(f"claude-code {wanted.cli.install_name}")
    if not reasons and facts.unit.get("ActiveState") != "active":
        reasons.append(f"unit is {facts.unit.get('ActiveState') or 'missing'}")
    return tuple(reasons)


def _restarts(wanted: Wanted, path: str) -> bool:
    return any(f.path == path and f.restarts for f in wanted.files)
