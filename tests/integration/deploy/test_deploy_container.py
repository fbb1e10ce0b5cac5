"""runtime: container: the agent image built offline, run through the docker SDK, verified.

The "container host" is this machine's own docker engine (test hosts run no docker inside);
its files live under a scratch directory that stands for the host's ``/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from conftest import (  # type: ignore[import-not-found]
    AGENT,
    PREFIX,
    SECRETS,
    DeployEnv,
    assert_sealed,
    command_task_result,
    sandbox_argv,
)
from rich.console import Console

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.deploy.image import UID
from cluster.deploy.outcome import HostOutcome
from cluster.deploy.run import run
from cluster.testhosts import bed as testbed
from cluster.testhosts.model import NETWORK
from cluster.transport import docker
from cluster.units import layout

pytestmark = pytest.mark.integration
NAME = f"{PREFIX}-ctr"
SPECIALTY = "docs"  # only the container agent serves it: the systemd agents serve backend


@pytest.fixture(scope="module")
def container_env(deploy_env: DeployEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    dict[str, Any]
]:  # fmt: skip
    base = tmp_path_factory.mktemp("container-host")
    inventory = base / "inventory"
    inventory.mkdir()
    hosts = {NAME: {"hostname": "127.0.0.1", "username": "root", "groups": ["containers"],
                    "data": {"runtime": "container", "specialties": [SPECIALTY],
                             "state_repo": deploy_env.state.agent_url,
                             **testbed.LOWERED}}}  # fmt: skip
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (inventory / "groups.yaml").write_text(yaml.safe_dump({"containers": {}}))
    overrides = {"inventory": inventory, "container_root": base / "root",
                 "container_network": NETWORK}  # fmt: skip
    try:
        yield overrides
    finally:
        for container in docker.client().containers.list(all=True, filters={"name": NAME}):
            container.remove(force=True)


def _run(
    env: DeployEnv, overrides: dict[str, Any], rollback: bool = False
) -> dict[str, HostOutcome]:
    rest = dict(overrides)
    rest.setdefault("agent", AGENT)
    settings = testbed.testbed_settings(
        env.source, rest.pop("inventory"), env.work, env.state, **rest
    )
    console = Console(width=160, force_terminal=False)
    outcomes = run(settings, console, rollback=rollback, environ=SECRETS)
    return {o.host: o for o in outcomes}


def _deploy(env: DeployEnv, overrides: dict[str, Any], rollback: bool = False) -> HostOutcome:
    outcomes = _run(env, overrides, rollback)
    assert list(outcomes) == [NAME]
    return outcomes[NAME]


def _rollback(env: DeployEnv, overrides: dict[str, Any]) -> HostOutcome:
    return _deploy(env, overrides, rollback=True)


def test_a_container_agent_is_deployed_verified_works_and_redeploys_as_ok(
    deploy_env: DeployEnv, container_env: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first = _deploy(deploy_env, container_env)
    assert first.status == "changed", first.reason
    assert any(a.startswith("run: claude-cluster-agent:") for a in first.actions), first.actions

    container = docker.client().containers.get(layout.container_name(NAME))
    host_config, config = container.attrs["HostConfig"], container.attrs["Config"]
    assert container.status == "running"
    assert host_config["ReadonlyRootfs"] is True
    assert "no-new-privileges:true" in host_config["SecurityOpt"]
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert config["User"] == f"{UID}:{UID}"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]  # from the host's secrets.env
    secrets = _on_root(container_env, layout.SECRETS_ENV).stat()
    assert (secrets.st_mode & 0o777, secrets.st_uid, secrets.st_gid) == (0o600, 0, 0)
    # The sandbox starts in the agent's container, as the agent: the unit's syscall filter in
    # place of docker's default, /proc unmasked; root stays read-only, no capability, no suid.
    assert host_config["MaskedPaths"] == [] and host_config["ReadonlyPaths"] == []
    assert [o for o in host_config["SecurityOpt"] if o.startswith("seccomp=")] != []
    assert "seccomp=unconfined" not in host_config["SecurityOpt"]
    agent = f"{UID}:{UID}"
    # Known and not understood yet: under load, one such exec in a few CI runs ends 137 (SIGKILL)
    # after printing the probe's whole, correct output. A sandbox that cannot start fails all
    # three tries; one clean run proves it starts and exits 0 here.
    tries = [docker.exec_argv(container, sandbox_argv(str(layout.WORKSPACE)), user=agent)]
    while tries[-1][0] != 0 and len(tries) < 3:
        tries.append(docker.exec_argv(container, sandbox_argv(str(layout.WORKSPACE)),
                                      user=agent))  # fmt: skip
    code, out, _ = tries[-1]
    assert code == 0, (tries, container_state(container))
    assert_sealed(out)
    check = ["claude-cluster", "sandbox", "check", "--config", str(layout.AGENT_CONFIG),
             "--workdir", str(layout.WORKSPACE)]  # fmt: skip
    code, out, err = docker.exec_argv(container, check, user=agent)
    assert code == 0 and "sandbox: sealed" in out + err, (out, err)
    code, out, err = docker.exec_argv(container, ["mv", str(layout.SSH_DIR),
                                                  "/var/lib/claude-cluster/x"], user=agent)
    assert code != 0, (out, err)  # a read-only mount: the deploy key and known_hosts stay

    state = deploy_env.state
    reader = HeartbeatReader(state.control_url, tmp_path, state.control_ssh_command)
    beat = reader.beat(NAME)
    assert beat is not None and beat.state == "running" and beat.host == NAME, beat

    monkeypatch.setenv("GIT_SSH_COMMAND", state.control_ssh_command)
    result = command_task_result(state, tmp_path, "ctr-cmd-1", SPECIALTY)
    assert result.status == "succeeded" and result.agent == NAME, result

    again = _deploy(deploy_env, container_env)
    assert (again.status, again.actions) == ("ok", ())


def _on_root(overrides: dict[str, Any], path: PurePosixPath) -> Path:
    return Path(overrides["container_root"]) / str(path).lstrip("/")


def test_an_unverified_container_agent_is_put_back(
    deploy_env: DeployEnv, container_env: dict[str, Any]
) -> None:
    assert _deploy(deploy_env, container_env).status in ("changed", "ok")
    client = docker.client()
    before = client.containers.get(layout.container_name(NAME))
    config = _on_root(container_env, layout.AGENT_CONFIG)
    config_before = config.read_bytes()
    broken = {**testbed.AGENT, "state": "ssh://root@172.29.231.254/nowhere.git"}  # no such host
    outcome = _deploy(deploy_env, {**container_env, "agent": broken, "verify_timeout": 8.0})
    assert outcome.failed and "not verified within" in outcome.reason, outcome
    assert outcome.rolled_back == "the container and the files before this run"
    after = client.containers.get(layout.container_name(NAME))
    assert (after.id, after.status) == (before.id, "running")  # the very container, started again
    assert config.read_bytes() == config_before
    assert not list(config.parent.glob("*.previous"))
    aside_name = f"{layout.container_name(NAME)}-previous"
    aside = client.containers.list(all=True, filters={"name": aside_name})
    assert aside == []
    assert _deploy(deploy_env, container_env).status == "ok"  # back where it was


def test_rollback_runs_the_image_the_container_replaced(
    deploy_env: DeployEnv, container_env: dict[str, Any], tmp_path: Path
) -> None:
    assert _deploy(deploy_env, container_env).status in ("changed", "ok")
    client = docker.client()
    built = client.containers.get(layout.container_name(NAME)).attrs["Config"]["Image"]
    other = "claude-cluster-agent:ccc-test-next"  # the same image under another tag
    client.images.get(built).tag(other)
    inventory = Path(container_env["inventory"])
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    original = yaml.safe_dump(hosts)
    hosts[NAME]["data"]["container_image"] = other
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    state = deploy_env.state
    reader = HeartbeatReader(state.control_url, tmp_path, state.control_ssh_command)
    try:
        moved = _deploy(deploy_env, container_env)
        assert (moved.status, moved.actions) == ("changed", (f"run: {other}",)), moved
        rolled = _rollback(deploy_env, container_env)
        assert (rolled.status, rolled.actions) == ("changed", (f"run: {built}",)), rolled
        current = client.containers.get(layout.container_name(NAME))
        assert current.attrs["Config"]["Image"] == built and current.status == "running"
        beat = reader.beat(NAME)
        assert beat is not None and beat.state == "running", beat
        again = _rollback(deploy_env, container_env)  # rollback twice: forward again
        assert again.actions == (f"run: {other}",), again
    finally:
        (inventory / "hosts.yaml").write_text(original)
    assert _deploy(deploy_env, container_env).actions == (f"run: {built}",)
    client.images.remove(other)


def test_rollback_without_a_previous_image_fails_and_changes_nothing(
    deploy_env: DeployEnv, container_env: dict[str, Any]
) -> None:
    client = docker.client()
    for container in client.containers.list(all=True, filters={"name": NAME}):
        container.remove(force=True)
    first = _deploy(deploy_env, container_env)  # a fresh container replaces nothing
    assert first.status == "changed", first
    before = client.containers.get(layout.container_name(NAME)).id
    rolled = _rollback(deploy_env, container_env)
    assert rolled.failed and rolled.reason == "no previous image to return to", rolled
    assert client.containers.get(layout.container_name(NAME)).id == before


def test_diff_shows_the_container_hosts_files_with_secrets_masked(
    deploy_env: DeployEnv, container_env: dict[str, Any]
) -> None:
    assert _deploy(deploy_env, container_env).status in ("changed", "ok")
    config = _on_root(container_env, layout.AGENT_CONFIG)
    secrets = _on_root(container_env, layout.SECRETS_ENV)
    snapshot = {p: p.read_bytes() for p in (config, secrets)}
    config.write_text(config.read_text() + "# local edit\n")
    secrets.write_text(secrets.read_text() + "EXTRA=1\n")
    edited = {p: p.read_bytes() for p in (config, secrets)}
    checked = _deploy(deploy_env, {**container_env, "check": True, "diff": True})
    text = "\n".join(checked.diffs)
    assert checked.status == "changed" and "-# local edit" in text, checked
    assert f"--- {layout.SECRETS_ENV} (secret: contents masked)" in text
    assert all(value not in text for value in SECRETS.values())
    assert {p: p.read_bytes() for p in (config, secrets)} == edited  # check mode wrote nothing
    assert _deploy(deploy_env, container_env).status == "changed"
    assert {p: p.read_bytes() for p in (config, secrets)} == snapshot


# What systemd hosts have, container hosts have too: the same steps of the one host runtime.


@contextmanager
def _host_data(overrides: dict[str, Any], **data: Any) -> Iterator[None]:
    """The container host's inventory data with ``data`` on top, for the block."""
    hosts_yaml = Path(overrides["inventory"]) / "hosts.yaml"
    original = hosts_yaml.read_text()
    hosts = yaml.safe_load(original)
    hosts[NAME]["data"].update(data)
    hosts_yaml.write_text(yaml.safe_dump(hosts))
    try:
        yield
    finally:
        hosts_yaml.write_text(original)


def _agent_container() -> Any:
    return docker.client().containers.get(layout.container_name(NAME))


def test_preflight_refuses_a_container_host_and_changes_nothing(
    deploy_env: DeployEnv, container_env: dict[str, Any]
) -> None:
    assert _deploy(deploy_env, container_env).status in ("changed", "ok")
    before = _agent_container().id
    config = _on_root(container_env, layout.AGENT_CONFIG)
    config_before = config.read_bytes()
    with _host_data(container_env, min_cpus=512, max_tasks=5):
        refused = _deploy(deploy_env, container_env)
    assert refused.failed and refused.reason.startswith("preflight: cpus: "), refused
    assert "min_cpus" in refused.reason and refused.actions == ()
    missing = "claude-cluster-agent:ccc-no-such-image"
    with _host_data(container_env, container_image=missing):
        gone = _deploy(deploy_env, container_env)
    assert gone.failed and f"image: {missing} is not in the docker engine" in gone.reason, gone
    after = _agent_container()
    assert (after.id, after.status) == (before, "running")
    assert config.read_bytes() == config_before
    assert _deploy(deploy_env, container_env).status == "ok"


def test_check_mode_lists_the_container_hosts_changes_and_changes_nothing(
    deploy_env: DeployEnv, container_env: dict[str, Any]
) -> None:
    assert _deploy(deploy_env, container_env).status in ("changed", "ok")
    before = _agent_container()
    config = _on_root(container_env, layout.AGENT_CONFIG)
    config_before = config.read_bytes()
    with _host_data(container_env, max_tasks=4):
        checked = _deploy(deploy_env, {**container_env, "check": True})
    image = before.attrs["Config"]["Image"]
    assert checked.status == "changed", checked
    assert checked.actions == (f"write: {layout.AGENT_CONFIG}", f"run: {image}"), checked
    assert _agent_container().id == before.id and config.read_bytes() == config_before
    assert _deploy(deploy_env, container_env).status == "ok"


def test_tags_config_only_writes_the_container_hosts_files(
    deploy_env: DeployEnv, container_env: dict[str, Any]
) -> None:
    assert _deploy(deploy_env, container_env).status in ("changed", "ok")
    before = _agent_container()
    image = before.attrs["Config"]["Image"]
    config = _on_root(container_env, layout.AGENT_CONFIG)
    with _host_data(container_env, max_tasks=3):
        written = _deploy(deploy_env, {**container_env, "tags": ("config",)})
        assert written.status == "changed", written
        assert written.actions == (f"write: {layout.AGENT_CONFIG}",)
        assert yaml.safe_load(config.read_text())["max_tasks"] == 3
        after = _agent_container()
        assert (after.id, after.status) == (before.id, "running")  # no run: service is a tag
        assert not list(config.parent.glob("*.previous"))  # verified: backups dropped
        # The container's label says which files it started with: the next run starts anew.
        ran = _deploy(deploy_env, {**container_env, "tags": ("service",)})
        assert (ran.status, ran.actions) == ("changed", (f"run: {image}",)), ran
        assert _agent_container().id != before.id
        assert _deploy(deploy_env, container_env).status == "ok"
    back = _deploy(deploy_env, container_env)
    assert back.actions == (f"write: {layout.AGENT_CONFIG}", f"run: {image}"), back


def test_batch_1_stops_after_a_failed_container_host(
    converged: DeployEnv, container_env: dict[str, Any], tmp_path: Path
) -> None:
    assert _deploy(converged, container_env).status in ("changed", "ok")
    before = _agent_container().id
    systemd = converged.names[0]
    config = ["cat", str(layout.AGENT_CONFIG)]
    systemd_before = converged.exec(systemd, config)[1]
    inventory = tmp_path / "inventory"
    changed = {systemd: {"max_tasks": 2}}  # would change, were it attempted
    testbed.write_inventory(inventory, converged.hosts, converged.state, changed)
    hosts = yaml.safe_load((inventory / "hosts.yaml").read_text())
    ours = yaml.safe_load((Path(container_env["inventory"]) / "hosts.yaml").read_text())
    ours[NAME]["data"]["state_repo"] = "ssh://root@172.29.231.254/nowhere.git"  # never beats
    (inventory / "hosts.yaml").write_text(yaml.safe_dump({**ours, **hosts}, sort_keys=False))
    (inventory / "groups.yaml").write_text(yaml.safe_dump({"agents": {}, "containers": {}}))
    settings = {**container_env, "inventory": inventory, "limit": (NAME, systemd), "batch": 1,
                "verify_timeout": 8.0}  # fmt: skip
    outcomes = _run(converged, settings)
    assert list(outcomes) == [NAME, systemd]
    failed = outcomes[NAME]
    assert failed.failed and "not verified within" in failed.reason, failed
    assert failed.rolled_back == "the container and the files before this run"
    assert outcomes[systemd].status == "skipped" and outcomes[systemd].actions == ()
    assert "batch 1 had a failure" in outcomes[systemd].reason
    assert converged.exec(systemd, config)[1] == systemd_before  # untouched
    assert (_agent_container().id, _agent_container().status) == (before, "running")


def container_state(container: Any) -> str:
    """The container's state (restarts, OOM, exit code) and its log's tail: for a failure."""
    container.reload()
    state = container.attrs["State"]
    shown = {k: state.get(k) for k in ("Status", "Running", "Restarting", "OOMKilled",
                                        "ExitCode", "StartedAt", "FinishedAt")}  # fmt: skip
    logs = container.logs(tail=40).decode(errors="replace")
    return f"{shown} restarts={container.attrs.get('RestartCount')}\n{logs}"

