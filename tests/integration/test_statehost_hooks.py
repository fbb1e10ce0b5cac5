"""A test state host serving its repo as a production one does: the server hooks installed
with the host's own python3, the judge server beside the repo under systemd. Pushes over ssh
are judged there: what the rules refuse is refused with their words, what they accept lands
(a submit to main through main's rules and the task schema, a claim through the lean path).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import layers
from cluster.deploy.wheels import build_wheels
from cluster.state.client import Held, Identity, StateClient
from cluster.state.gitcmd import RefUpdate
from cluster.state.records import Claim
from cluster.state.session import DEFAULT_COMMAND as SESSION_COMMAND
from cluster.state.session import attach
from cluster.testhosts.hosts import down
from cluster.testhosts.statehost import JUDGE_UNIT, REPO, StateHost, start_state_host
from cluster.transport import docker
from tests.helpers import ROOT, commit_files, task_doc, task_files

pytestmark = pytest.mark.integration
PREFIX = "ccc-hooked-state"


@pytest.fixture(scope="module")
def hooked(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateHost]:
    wheels = build_wheels(ROOT, ROOT / layers.WORK_DIR / "wheels")
    try:
        yield start_state_host(tmp_path_factory.mktemp("hooked"), prefix=PREFIX,
                               wheels=wheels.directory)  # fmt: skip
    finally:
        down(PREFIX)


def _push(state: StateHost, git_dir: Path, sha: str, ref: str) -> subprocess.CompletedProcess[str]:
    """A plain ``git push`` of ``sha`` to ``ref``, as any writer with the deploy key may."""
    return subprocess.run(["git", "--git-dir", str(git_dir), "push", state.control_url,
                           f"{sha}:{ref}"], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin",
                               "GIT_SSH_COMMAND": state.control_ssh_command},
                          check=False)  # fmt: skip


def _ghost_claim(client: StateClient, key: str, blob: str) -> str:
    """A claim commit, in the agent's mirror, of ``key``: a task that main does not hold."""
    now = time.time()
    ghost = Claim(task=key, agent=client.identity.name, host="h", pid=1, attempt=1,
                  claimed_at=now, renewed_at=now, expires_at=now + 30, lease_seconds=30,
                  task_blob=blob, takeover_of=None)  # fmt: skip
    store = client.remote.store
    return store.write_commit(store.single_file_tree(ghost.FILE, ghost.to_yaml()), (),
                              "w <w@localhost>", int(now), "claim a ghost")  # fmt: skip


def test_pushes_over_ssh_are_judged_by_the_state_hosts_hooks(
    hooked: StateHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = docker.get(docker.client(), hooked.record.name)
    assert docker.exec_argv(container, ["systemctl", "is-active", JUDGE_UNIT])[1].strip() \
        == "active"
    monkeypatch.setenv("GIT_SSH_COMMAND", hooked.control_ssh_command)
    commit_files(hooked.control_url, task_files([task_doc("hooked-1")]), tmp_path / "person")
    client = StateClient(hooked.control_url, tmp_path / "agent", Identity("hooked-agent"),
                         {"GIT_SSH_COMMAND": hooked.control_ssh_command})  # fmt: skip
    try:
        snap = client.snapshot()
        task = snap.tasks["hooked-1"]
        assert task.spec is not None
        # A writer claiming a task that main does not hold: the rules refuse it, in their words.
        tip = _ghost_claim(client, "ghost-1", task.blob)
        refused = _push(hooked, client.remote.mirror, tip, "refs/claims/ghost-1")
        assert refused.returncode != 0, refused
        assert "no task 'ghost-1' under tasks/ on main" in refused.stderr, refused.stderr
        assert "push refused by the state repo's rules" in refused.stderr, refused.stderr
        # ... and a branch the protocol has no place for.
        stray = _push(hooked, client.remote.mirror, snap.main or "", "refs/heads/stray")
        assert stray.returncode != 0 and "only refs/heads/main" in stray.stderr, stray.stderr
        # The agent's own claim of the task main holds is taken.
        held = client.claim(snap, task, 30.0)
        assert isinstance(held, Held), held
        assert client.remote.refs().get("refs/claims/hooked-1") == held.tip
    finally:
        client.close()
    _, listed, _ = docker.exec_argv(container, ["git", "--git-dir", REPO, "for-each-ref",
                                                "--format=%(refname)", "refs/claims"])
    assert listed.split() == ["refs/claims/hooked-1"], listed


def test_an_agents_session_with_the_state_host_reads_and_writes_under_its_rules(
    hooked: StateHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's own python runs ``claude-cluster-session`` over the agent's ssh: reads are
    answered over it, a claim the rules accept lands with no push, one they refuse is refused
    with their words and leaves nothing."""
    monkeypatch.setenv("GIT_SSH_COMMAND", hooked.control_ssh_command)
    commit_files(hooked.control_url, task_files([task_doc("session-1")]),
                 tmp_path / "person")  # fmt: skip
    client = StateClient(hooked.control_url, tmp_path / "agent", Identity("session-agent"),
                         {"GIT_SSH_COMMAND": hooked.control_ssh_command})  # fmt: skip
    reads: list[str] = []
    client.remote.on_read = reads.append
    session = attach(client.remote, SESSION_COMMAND)
    assert session is not None
    try:
        snap = client.snapshot()
        task = snap.tasks["session-1"]
        tip = _ghost_claim(client, "ghost-2", task.blob)
        refused = session.write([RefUpdate("refs/claims/ghost-2", tip, None)], atomic=False)
        assert refused is not None and refused.rejected == {"refs/claims/ghost-2"}, session.lost
        held = client.claim(snap, task, 30.0)
        assert isinstance(held, Held), held
        assert client.remote.refs().get("refs/claims/session-1") == held.tip
        assert set(reads) == {"session"}, (reads, session.lost)
    finally:
        client.close()
    container = docker.get(docker.client(), hooked.record.name)
    _, listed, _ = docker.exec_argv(container, ["git", "--git-dir", REPO, "for-each-ref",
                                                "--format=%(refname)", "refs/claims"])
    assert "refs/claims/ghost-2" not in listed.split(), listed
    assert "refs/claims/session-1" in listed.split(), listed
    _, missing, _ = docker.exec_argv(container, ["git", "--git-dir", REPO, "cat-file", "-t", tip])
    assert "commit" not in missing, "the refused claim's commit was moved into the repo"
