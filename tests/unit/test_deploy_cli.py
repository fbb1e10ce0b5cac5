"""The pinned Claude Code CLI: packed once per version, planned only where claude-code runs,
unpacked on hosts by a checked script, reported by health.

The package here is a small stand-in with the real package's layout (package.json, a
``bin/claude.exe`` that answers ``--version``, the platform package under node_modules); the
host scripts run for real, in a scratch directory standing for /opt/claude-cluster.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cluster.deploy.claudecli import (
    PACKAGE,
    CliMismatch,
    CliPack,
    find_package,
    pack_cli,
    package_version,
    tarball_name,
)
from cluster.deploy.facts import HostFacts
from cluster.deploy.plan import Plan, plan_host
from cluster.deploy.remote import CLI_INSTALL, CLI_LINK
from cluster.deploy.wanted import Wanted, wanted_state
from cluster.deploy.wheels import WheelSet
from cluster.health.model import HostFacts as HealthFacts
from cluster.health.model import HostProbe
from cluster.health.probe import probe_argv
from cluster.health.render import print_health
from cluster.health.verdict import fleet_health, host_health
from cluster.inventory.model import HostSpec
from cluster.pins import CLAUDE_CODE_VERSION
from cluster.secret import Secret
from cluster.units import layout
from cluster.units.agent_yaml import agent_config, render_agent_config

PIN = CLAUDE_CODE_VERSION
RELEASE = "0.1.0-0123456789abcdef"
MANIFEST = {"claude_code_cluster-0.1.0-py3-none-any.whl": "a" * 64}
UNIT = str(layout.UNIT_PATH)


def fake_package(root: Path, version: str = PIN, says: str | None = None) -> Path:
    """An installed @anthropic-ai/claude-code as npm -g leaves it, with a tiny 'native' binary."""
    package = root / "lib" / "node_modules" / "@anthropic-ai" / "claude-code"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": PACKAGE, "version": version}))
    (package / "README.md").write_text("readme\n")
    binary = package / "bin" / "claude.exe"
    binary.write_text(f"#!/bin/sh\necho '{says or version} (Claude Code)'\n")
    binary.chmod(0o755)
    platform = package / "node_modules" / "@anthropic-ai" / "claude-code-linux-x64"
    platform.mkdir(parents=True)
    (platform / "claude").write_bytes(binary.read_bytes())
    (platform / "package.json").write_text(json.dumps({"name": f"{PACKAGE}-linux-x64"}))
    return package


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- packing on the control host ---------------------------------------------------------


def test_the_pack_is_reproducible_checksummed_and_an_npm_prefix(tmp_path: Path) -> None:
    package = fake_package(tmp_path / "npm")
    first = pack_cli(tmp_path / "cache-1", package)
    os.utime(package / "README.md", (1, 1))  # times and cache places do not change the bytes
    second = pack_cli(tmp_path / "cache-2", package)
    assert first.built and second.built
    assert first.sha256 == second.sha256 == sha256(first.path) == sha256(second.path)
    assert first.name == tarball_name(PIN) and first.size == first.path.stat().st_size
    assert first.install_name == f"{PIN}-{first.sha256[:12]}"
    with tarfile.open(first.path) as archive:
        members = {m.name: m for m in archive.getmembers()}
    prefix = "lib/node_modules/@anthropic-ai/claude-code"
    assert members["bin/claude"].issym()
    assert members["bin/claude"].linkname == f"../{prefix}/bin/claude.exe"
    assert members[f"{prefix}/bin/claude.exe"].mode == 0o755
    assert members[f"{prefix}/package.json"].mode == 0o644
    assert not [n for n in members if "/node_modules/@anthropic-ai/claude-code/node_modules" in n]
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


def test_a_second_pack_reuses_the_cache_without_reading_the_package(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = pack_cli(cache, fake_package(tmp_path / "npm"))
    stamp = first.path.stat().st_mtime_ns
    again = pack_cli(cache, tmp_path / "no-such-package")
    assert not again.built and again.sha256 == first.sha256
    assert first.path.stat().st_mtime_ns == stamp


def test_an_incomplete_cache_entry_is_packed_again(tmp_path: Path) -> None:
    cache, package = tmp_path / "cache", fake_package(tmp_path / "npm")
    first = pack_cli(cache, package)
    with first.path.open("r+b") as handle:
        handle.truncate(100)  # a copy cut short: its size no longer matches the sidecar
    again = pack_cli(cache, package)
    assert again.built and again.sha256 == first.sha256


def test_a_new_pin_packs_its_own_tarball(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = pack_cli(cache, fake_package(tmp_path / "a"))
    new = pack_cli(cache, fake_package(tmp_path / "b", "9.9.9"), version="9.9.9")
    assert new.built and new.name != old.name and new.sha256 != old.sha256
    assert old.path.is_file()  # the old pin's tarball stays for hosts still on it


def test_another_version_on_the_control_host_is_refused(tmp_path: Path) -> None:
    package = fake_package(tmp_path / "npm", "2.0.0")
    with pytest.raises(CliMismatch, match=rf"has {PACKAGE} 2\.0\.0 .*the pinned {PIN}"):
        pack_cli(tmp_path / "cache", package)
    assert not list((tmp_path / "cache").glob("*.tar.gz"))


def test_a_binary_that_says_another_version_is_refused(tmp_path: Path) -> None:
    package = fake_package(tmp_path / "npm", says="0.0.1")  # a stub a failed postinstall left
    with pytest.raises(CliMismatch, match=rf"says 0\.0\.1, not the pinned {PIN}"):
        pack_cli(tmp_path / "cache", package)


def test_the_package_is_found_from_claude_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = fake_package(tmp_path / "npm")
    bin_dir = tmp_path / "npm" / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(package / "bin" / "claude.exe")  # as npm -g links it
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_package() == package
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CliMismatch, match="not on PATH"):
        find_package()


def test_this_control_host_has_the_pinned_cli() -> None:
    """setup.sh installs the pin (it reads cluster/pins.py, as deploy and the image do)."""
    setup = (Path(__file__).resolve().parents[2] / "setup.sh").read_text()
    assert "cluster/pins.py" in setup and f'"{PIN}"' not in setup
    try:
        package = find_package()
    except CliMismatch:
        if os.environ.get("CI"):
            pytest.fail("the Claude Code CLI is not installed: setup.sh installs it")
        pytest.skip("the Claude Code CLI is not installed (setup.sh installs it)")
    assert package_version(package) == PIN


# --- the host side: CLI_INSTALL and CLI_LINK, run for real in a scratch root ----------------


def host_script(body: str, args: dict[str, Any], stdin: bytes = b"") -> Done:
    done = subprocess.run([sys.executable, "-c", body, json.dumps(args)], input=stdin,
                          capture_output=True, check=False)  # fmt: skip
    return Done(done.returncode, done.stderr.decode("utf-8", "replace"))


@dataclass(frozen=True)
class Done:
    returncode: int
    stderr: str


def upload(pack: CliPack, root: Path) -> Path:
    """Where CLI_INSTALL writes the tarball it reads from its standard input."""
    root.mkdir(parents=True, exist_ok=True)
    return root / f".{pack.name}"


def install_args(pack: CliPack, root: Path, sent: Path) -> dict[str, Any]:
    return {"upload": str(sent), "sha256": pack.sha256, "root": str(root),
            "name": pack.install_name, "mark": ".installed"}  # fmt: skip


def test_the_host_unpacks_a_checked_tarball_and_the_release_link_finds_it(
    tmp_path: Path,
) -> None:
    pack = pack_cli(tmp_path / "cache", fake_package(tmp_path / "npm"))
    root = tmp_path / "opt" / "claude-code"
    sent = upload(pack, root)
    done = host_script(CLI_INSTALL, install_args(pack, root, sent), pack.path.read_bytes())
    assert done.returncode == 0, done.stderr
    installed = root / pack.install_name
    assert (installed / ".installed").read_text() == pack.sha256 + "\n"
    assert not sent.exists()  # the tarball does not stay on the host
    release = tmp_path / "opt" / "releases" / RELEASE
    release.mkdir(parents=True)
    link = release / layout.CLI_LINK
    done = host_script(CLI_LINK, {"link": str(link), "root": str(root), "name": pack.install_name})
    assert done.returncode == 0, done.stderr
    said = subprocess.run([str(link / "bin" / "claude"), "--version"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert said == f"{PIN} (Claude Code)\n"
    host_script(CLI_LINK, {"link": str(link), "root": str(root), "name": None})
    assert not link.exists() and installed.is_dir()


def test_the_host_refuses_a_tarball_with_another_checksum(tmp_path: Path) -> None:
    pack = pack_cli(tmp_path / "cache", fake_package(tmp_path / "npm"))
    root = tmp_path / "claude-code"
    sent = upload(pack, root)
    done = host_script(
        CLI_INSTALL, {**install_args(pack, root, sent), "sha256": "0" * 64}, pack.path.read_bytes()
    )
    assert done.returncode != 0 and f"expected {'0' * 64}" in done.stderr
    assert not sent.exists() and not (root / pack.install_name).exists()


def test_the_host_refuses_members_outside_the_install(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        info = tarfile.TarInfo("../escape")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    pack = CliPack(evil, PIN, sha256(evil), evil.stat().st_size, built=True)
    root = tmp_path / "claude-code"
    done = host_script(CLI_INSTALL, install_args(pack, root, upload(pack, root)), evil.read_bytes())
    assert done.returncode != 0 and "refusing member '../escape'" in done.stderr
    assert not (tmp_path / "escape").exists()


# --- the plan: only hosts whose agent uses claude-code get it, once -------------------------

PACK = CliPack(Path("/cache/claude-code.tar.gz"), PIN, "c" * 64, 185_000_000, built=False)
INSTALL = PACK.install_name


def wanted(executors: tuple[str, ...] = ("claude-code",), cli: CliPack | None = PACK) -> Wanted:
    host = HostSpec(
        name="agent-1",
        hostname="127.0.0.1",
        username="root",
        specialties=("backend",),
        state_repo="ssh://root@10.0.0.2/srv/state.git",
    )
    wheels = WheelSet(Path("/cache"), "0.1.0", "0123456789abcdef", dict(MANIFEST), built=False)
    secrets = {"ANTHROPIC_API_KEY": Secret("sk-ant-plan-0123456789")}
    return wanted_state(host, wheels, secrets, {"executors": list(executors)}, cli=cli)  # fmt: skip


def fresh() -> HostFacts:
    return HostFacts(host="agent-1", python=(3, 11, 2), venv=True)


def converged(want: Wanted, **update: Any) -> HostFacts:
    owners: dict[str, tuple[int, str, str] | None] = {f.path: f.ownership for f in want.files}
    owners.update({d.path: d.ownership for d in want.dirs})
    facts = HostFacts(
        host=want.host, python=(3, 11, 2), venv=True, pid1="systemd", systemd_booted=True,
        systemctl=True, releases=(RELEASE,), current=RELEASE, owners=owners,
        unit={"ActiveState": "active", "UnitFileState": "enabled", "MainPID": "42"},
        user_home=str(layout.STATE_DIR), files={f.path: f.sha256 for f in want.files},
        wheels=dict(MANIFEST),
        cli={INSTALL: PACK.sha256} if want.cli else {},
        cli_links={RELEASE: INSTALL} if want.cli else {},
    )  # fmt: skip
    return facts.model_copy(update=update)


def kinds(plan: Plan) -> list[str]:
    return [a.kind for a in plan.actions]


def unit_text(want: Wanted) -> str:
    return next(f.body.reveal() for f in want.files if f.path == UNIT)


def test_a_host_without_claude_code_gets_nothing_of_the_cli() -> None:
    want = wanted(("command", "claude"))
    assert want.cli is None  # packed for the run, not for this host
    assert kinds(plan_host(fresh(), want)) == [
        "prepare", "push_wheels", "install", "switch", "write", "daemon_reload", "enable",
        "restart",
    ]  # fmt: skip
    assert "PATH=" not in unit_text(want)  # its unit is as it was before the CLI shipped
    assert plan_host(converged(want), want).actions == ()


def test_a_fresh_claude_code_host_gets_the_tarball_once_linked_into_the_release() -> None:
    want = wanted()
    plan = plan_host(fresh(), want)
    assert kinds(plan) == [
        "prepare", "push_wheels", "push_cli", "install", "link_cli", "switch", "write",
        "daemon_reload", "enable", "restart",
    ]  # fmt: skip
    assert plan.of("push_cli") == (PACK.name,) and plan.of("link_cli") == (INSTALL,)
    assert f"Environment=PATH={layout.CLI_BINARY.parent}:" in unit_text(want)
    assert str(layout.CLI_BINARY) == "/opt/claude-cluster/current/claude-code/bin/claude"


def test_a_second_deploy_uploads_nothing() -> None:
    want = wanted()
    assert plan_host(converged(want), want).actions == ()


def test_a_new_release_links_the_installed_cli_without_uploading_it() -> None:
    want = wanted()
    old = "0.0.9-ffffffffffffffff"
    facts = converged(want, releases=(old,), current=old, cli_links={old: INSTALL})
    plan = plan_host(facts, want)
    assert kinds(plan) == ["install", "link_cli", "switch", "restart"]


def test_an_agent_that_starts_using_claude_code_gets_it_and_restarts() -> None:
    before = wanted(("command",), cli=None)
    want = wanted()
    facts = converged(before)  # the release and files as a command-only agent had them
    plan = plan_host(
        facts.model_copy(
            update={
                "files": {**facts.files, **{f.path: f.sha256 for f in want.files if f.path != UNIT}}
            }
        ),
        want,
    )
    assert kinds(plan) == ["push_cli", "link_cli", "write", "daemon_reload", "restart"]
    assert plan.of("write") == (UNIT,)  # its PATH


def test_a_changed_checksum_uploads_again_and_relinks() -> None:
    want = wanted()
    facts = converged(want, cli={INSTALL: "d" * 64})  # a same-named install of other bytes
    assert kinds(plan_host(facts, want)) == ["push_cli"]
    relinked = converged(
        want,
        cli_links={RELEASE: "2.0.0-000000000000"},
        cli={INSTALL: PACK.sha256, "2.0.0-000000000000": "e" * 64},
    )
    plan = plan_host(relinked, want)
    assert kinds(plan) == ["link_cli", "restart"]
    assert plan.of("restart") == (f"claude-code {INSTALL}",)


def test_cli_installs_go_with_the_last_release_that_links_them() -> None:
    want = wanted()
    old = ("0.0.1-1", "0.0.2-2", "0.0.3-3", "0.0.4-4")
    links = {"0.0.1-1": "1.0.0-a", "0.0.2-2": "1.0.0-b", "0.0.3-3": "1.0.0-c", RELEASE: INSTALL}
    cli = {INSTALL: PACK.sha256, "1.0.0-a": "1", "1.0.0-b": "2", "1.0.0-c": "3", "0.1-x": "4"}
    facts = converged(want, releases=(*old, RELEASE), previous="0.0.1-1", cli_links=links,
                      cli=cli)  # fmt: skip
    plan = plan_host(facts, want, keep_releases=3)
    assert plan.of("prune") == ("0.0.2-2",)
    # b went with its release; a is previous's, c a kept release's; 0.1-x nobody's
    assert plan.of("prune_cli") == ("0.1-x", "1.0.0-b")


def test_tags_and_check_mode_treat_the_cli_as_code() -> None:
    plan = plan_host(fresh(), wanted())
    assert "push_cli" in kinds(plan.only(("code",)))
    assert not {"push_cli", "link_cli"} & set(kinds(plan.only(("config", "service"))))
    assert str(plan.actions[2]) == f"push cli: {PACK.name}"


# --- health: the CLI version per host, flagged when it is not the pin ------------------------

PROBE = HostProbe(service="active", restarts=0, release=RELEASE, disk_free=50 * 10**9,
                  disk_total=100 * 10**9, mem_total=16 * 10**9, mem_available=8 * 10**9,
                  load1=0.1, cpus=4)  # fmt: skip


def judged(cli: str | None) -> list[str]:
    facts = HealthFacts("h1", "systemd", RELEASE, probe=replace(PROBE, claude_code=cli),
                        expected_claude_code=PIN)  # fmt: skip
    return [f.text for f in host_health(facts).findings]


def test_health_flags_a_cli_that_is_not_the_pin_or_is_missing() -> None:
    assert judged(PIN) == [] and judged(None) == []  # None: no claude-code agent there
    assert judged("2.0.0") == [f"claude-code 2.0.0, pinned {PIN}"]
    assert judged("") == [f"claude-code missing, pinned {PIN}"]
    hosts = [HealthFacts(n, probe=replace(PROBE, claude_code=v), expected_claude_code=PIN)
             for n, v in (("cc-host", PIN), ("plain-host", None))]  # fmt: skip
    console = Console(width=250, record=True, force_terminal=False)
    print_health(console, fleet_health([host_health(h) for h in hosts], None))
    text = console.export_text()
    rows = {line.split()[1]: line for line in text.splitlines() if "-host" in line}
    assert f" {PIN} " in rows["cc-host"] and f" {PIN} " not in rows["plain-host"]
    assert "claude-code" in text.splitlines()[2]  # the column's header


def test_the_health_probe_reads_the_agents_executors_and_runs_its_cli(tmp_path: Path) -> None:
    """The probe, run here: agent.yaml as deploy writes it, the CLI found on the agent's PATH
    (this control host's own `claude`, where setup.sh put it)."""
    host = HostSpec(name="h1", hostname="h", username="u", specialties=("backend",),
                    state_repo="ssh://git@s/r.git")  # fmt: skip
    results = {}
    for executors in (("claude-code",), ("command",)):
        config = tmp_path / f"{executors[0]}.yaml"
        agent = agent_config(host, executors=list(executors))
        config.write_text(render_agent_config(agent))
        argv = probe_argv("systemd", None, "h1")
        args = {**json.loads(argv[3]), "config": str(config)}
        done = subprocess.run([sys.executable, "-c", argv[2], json.dumps(args)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        results[executors[0]] = json.loads(done.stdout)["claude_code"]
    assert results["command"] is None
    expected = PIN if (Path("/usr/bin/claude").exists() or Path("/usr/local/bin/claude").exists()) \
        else ""  # fmt: skip
    assert results["claude-code"] == expected
