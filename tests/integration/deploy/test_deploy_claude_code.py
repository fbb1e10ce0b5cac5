"""The pinned Claude Code CLI reaches a real systemd host offline, once, and the agent runs it.

One host of its own (prefix ccc-deploycli, its own state host): the shared ccc-deploy fleet
runs agents without claude-code, and shipping ~185 MB to each of them would slow every deploy
test. The agent uses the repo runner with the claude-code executor, which looks the CLI up
on its unit's PATH when it starts: a verified heartbeat means the unit found it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DeployEnv, fresh_env  # type: ignore[import-not-found]
from test_deploy_systemd import _under_the_agents_unit  # type: ignore[import-not-found]

from cluster.deploy.claudecli import pack_cli
from cluster.deploy.image import ensure_agent_image
from cluster.deploy.wheels import build_wheels
from cluster.health.gather import HealthSettings, check_fleet
from cluster.pins import CLAUDE_CODE_VERSION
from cluster.testhosts import bed as testbed
from cluster.transport import docker
from cluster.units import layout

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
PREFIX = "ccc-deploycli"
# The repo runner builds its executors at start: claude-code needs `claude` on its PATH.
AGENT = {**testbed.AGENT, "runner": "repo", "executors": ["claude-code"]}


@pytest.fixture(scope="module")
def cli_env(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployEnv]:
    with fresh_env(tmp_path_factory.mktemp("deploy-cli"), PREFIX, 1) as env:
        yield env


def test_the_pinned_cli_ships_once_and_the_agents_unit_runs_it(cli_env: DeployEnv) -> None:
    name = cli_env.names[0]
    started = time.monotonic()
    outcome = cli_env.deploy(agent=AGENT)[name]
    seconds = time.monotonic() - started
    assert outcome.status == "changed", outcome.reason
    actions = " | ".join(outcome.actions)
    assert "push cli: claude-code-" in actions and "link cli" in actions, actions
    print(f"first deploy with the CLI: {seconds:.0f}s (pack included), phases {outcome.phases}")

    # On the host: one install under CLI_ROOT, checksummed, the release linking to it.
    code, out, err = cli_env.exec(name, [str(layout.CLI_BINARY), "--version"])
    assert (code, out.split()[:1]) == (0, [CLAUDE_CODE_VERSION]), (out, err)
    _, real, _ = cli_env.exec(name, ["readlink", "-f", str(layout.CLI_BINARY)])
    install = f"{layout.CLI_ROOT}/{CLAUDE_CODE_VERSION}-"
    assert real.startswith(install) and real.strip().endswith("/bin/claude.exe"), real
    _, listing, _ = cli_env.exec(name, ["ls", "-A", str(layout.CLI_ROOT)])
    assert len(listing.split()) == 1, listing  # no tarball or scratch left behind

    # The agent's own unit (its user, hardening and PATH) finds and runs that CLI.
    probe = ["/bin/sh", "-c", "command -v claude && claude --version"]
    result, said = _under_the_agents_unit(cli_env, name, probe)
    assert result == "success", said
    assert said.split()[:2] == [str(layout.CLI_BINARY), CLAUDE_CODE_VERSION], said

    # Health reports it per host, as the pin.
    health = check_fleet(HealthSettings(
        inventory=cli_env.inventory, work_dir=cli_env.work / "health", root=cli_env.source,
        state_url=cli_env.state.control_url, state_ssh_command=cli_env.state.control_ssh_command,
    ))  # fmt: skip
    probed = health.hosts[0].facts.probe
    assert probed is not None and probed.claude_code == CLAUDE_CODE_VERSION, health.hosts[0]
    assert not [f for f in health.hosts[0].findings if "claude-code" in f.text]

    # A second deploy transfers nothing: the host has that checksum already.
    again = cli_env.deploy(agent=AGENT)[name]
    assert (again.status, again.actions) == ("ok", ()), again


def test_the_agent_image_carries_the_same_pinned_cli(cli_env: DeployEnv) -> None:
    """Built offline from the tarball deploy packed (the module's caches: nothing is rebuilt);
    the agent's user finds the CLI on the image's PATH."""
    settings = cli_env.settings(agent=AGENT)
    wheels = build_wheels(settings.root, settings.cache_dir)
    pack = pack_cli(settings.cli_cache_dir)
    client = docker.client()
    tag = ensure_agent_image(client, wheels, ROOT, testbed.agent_base(), pack)
    assert tag.endswith(pack.sha256[:8]), tag
    with docker.translated(f"run {tag}"):
        out = client.containers.run(tag, ["sh", "-c", "command -v claude && claude --version"],
                                    remove=True, network_mode="none")  # fmt: skip
    said = out.decode().split()
    assert said[:2] == [f"{layout.CLI_ROOT}/bin/claude", CLAUDE_CODE_VERSION], said
