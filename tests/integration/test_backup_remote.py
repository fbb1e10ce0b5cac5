"""Backup of a state repo that lives on a real SSH host: bundled there, checked, restored here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.backup import create_backup, load_settings, maintain, restore
from cluster.errors import HostError
from cluster.state.checker import check
from cluster.state.gitcmd import list_refs, run_git
from cluster.state.records import Heartbeat, Result
from cluster.testhosts.hosts import down, up
from cluster.testhosts.model import HostSet
from cluster.transport import connect, run
from cluster.transport.openssh import ssh_command
from tests.clients import state_client
from tests.helpers import commit_files, make_state, task_doc, task_files

pytestmark = pytest.mark.integration

PREFIX = "ccc-backup"  # our own host: not ccc-it (the shared session) nor ccc-deploy
REPO = "/srv/state.git"


@dataclass
class StateHost:
    hosts: HostSet
    local: Path  # the repo pushed there, as it was

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.hosts.hosts[0].port}{REPO}"

    @property
    def ssh_command(self) -> str:
        paths = self.hosts.paths
        return ssh_command(paths.private_key, paths.known_hosts)


def seed(tmp: Path) -> Path:
    """A state repo with main, an in-flight claim, a result and a heartbeat."""
    repo = make_state(tmp)
    commit_files(repo, task_files([task_doc("built"), task_doc("flying")]), tmp / "person")
    with state_client(repo, tmp, "seed", work="work") as client:
        snap = client.snapshot()
        held = client.claim(snap, snap.tasks["built"], 600)
        assert held is not None and not isinstance(held, Result)
        assert client.finish(held, Result(task="built", status="succeeded", attempt=1,
                                          agent="seed"))
        assert client.claim(client.snapshot(), client.snapshot().tasks["flying"], 600)
        now = time.time()
        client.stop_heartbeat(Heartbeat(id="seed", host="h", pid=1, version="0", specialties=(
            "backend",), max_tasks=1, holding=(), state="stopped", started_at=now,
            last_seen=now, heartbeat_seconds=1.0), None)
    return repo


@pytest.fixture(scope="module")
def state_host(docker_engine: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[StateHost]:
    base = tmp_path_factory.mktemp("backup-remote")
    try:
        hosts = up(1, PREFIX, base / "host", say=lambda _: None)
        record, paths = hosts.hosts[0], hosts.paths
        with connect("127.0.0.1", record.port, "root", paths.private_key,
                     paths.known_hosts) as conn:
            run(conn, ["git", "init", "--quiet", "--bare", "--initial-branch=main", REPO])
        host = StateHost(hosts, seed(base))
        run_git(["push", "--quiet", "--mirror", host.url], git_dir=host.local,
                env={"GIT_SSH_COMMAND": host.ssh_command})
        yield host
    finally:
        down(PREFIX)


def test_backup_over_ssh_holds_every_ref_and_restores(state_host: StateHost,
                                                      tmp_path: Path) -> None:
    paths = state_host.hosts.paths
    settings = load_settings({"state": state_host.url, "dest": tmp_path / "backups",
                              "ssh_key": paths.private_key,
                              "known_hosts": paths.known_hosts}, environ={})
    outcome = create_backup(settings)
    expected = list_refs(["refs/"], git_dir=state_host.local)
    assert outcome.refs == expected
    assert {"refs/heads/main", "refs/claims/built", "refs/claims/flying",
            "refs/agents/seed"} <= set(outcome.refs)
    restored = restore(outcome.path, tmp_path / "restored.git")
    assert list_refs(["refs/"], git_dir=restored.path) == expected
    assert check(restored.path).tasks["built"] == ("done", "succeeded")
    with connect("127.0.0.1", state_host.hosts.hosts[0].port, "root", paths.private_key,
                 paths.known_hosts) as conn:  # the scratch bundle on the host is gone again
        _, out, _ = run(conn, ["sh", "-c", "ls -d /tmp/ccc-backup.* 2>/dev/null || true"])
    assert out.strip() == ""


def test_unknown_host_key_is_refused_and_nothing_is_written(state_host: StateHost,
                                                            tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    settings = load_settings({"state": state_host.url, "dest": tmp_path / "backups",
                              "ssh_key": state_host.hosts.paths.private_key,
                              "known_hosts": empty}, environ={})
    with pytest.raises(HostError, match="unknown host key"):
        create_backup(settings)
    assert [p.name for p in (tmp_path / "backups").iterdir()] == [".backup.lock"]


def test_maintain_over_ssh_prunes_and_runs_gc_on_the_host(
        state_host: StateHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = state_host.hosts.paths
    monkeypatch.setenv("GIT_SSH_COMMAND", state_host.ssh_command)  # git's own ssh for CAS
    settings = load_settings({"state": state_host.url, "ssh_key": paths.private_key,
                              "known_hosts": paths.known_hosts, "agent_days": 1}, environ={})
    env = {"GIT_SSH_COMMAND": state_host.ssh_command}
    try:
        outcome = maintain(settings, now=time.time() + 3 * 86400)
        assert outcome.heartbeats_deleted == ["seed"]
        assert outcome.gc.startswith("git gc on ssh://root@127.0.0.1")
        left = run_git(["ls-remote", state_host.url, "refs/agents/*"], env=env).stdout
        assert left.strip() == ""
    finally:  # leave the host as the other tests expect it
        run_git(["push", "--quiet", state_host.url, "refs/agents/seed:refs/agents/seed"],
                git_dir=state_host.local, env=env)
