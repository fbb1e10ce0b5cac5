"""One state-repo reader: the agent, health and deploy read it through StateRemote and Reader."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cluster.deploy.heartbeats import HeartbeatReader
from cluster.errors import ClusterError
from cluster.health.staterepo import read_state_facts
from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import list_refs
from cluster.state.init import init_state_repo
from cluster.state.records import Heartbeat
from cluster.state.remote import (
    REF_PATTERNS,
    StateRemote,
    fetch_specs,
    mirror_dir,
    ref_patterns,
)
from tests.helpers import local_ssh, ssh_url


def blocked(now: float) -> Heartbeat:
    """A heartbeat with every newer field, its pause still running at ``now`` (built when the
    test runs: a constant made at collection time may have run out in a long session)."""
    return Heartbeat(
        id="a1", host="h1", pid=4242, version="1.2.3", specialties=("backend",), max_tasks=1,
        holding=(), state="blocked", started_at=round(now - 60, 3), last_seen=round(now, 3),
        heartbeat_seconds=15.0, paused_until=round(now + 600, 3), metrics_port=9108,
        sandbox="off", credentials=("fp-aaaa", "fp-bbbb"), paused_for="fp-aaaa",
        paused_by="a2", reason="the model API refused credential fp-aaaa",
    )  # fmt: skip


@pytest.fixture
def beat() -> Heartbeat:
    return blocked(time.time())


def _state(tmp_path: Path, beat: Heartbeat) -> tuple[str, StateClient, str]:
    """A bare state repo read over ssh (through the mirror), one heartbeat on it; the URL,
    the agent's client and the ssh command that reaches it."""
    init_state_repo(tmp_path / "state.git")
    url = ssh_url(tmp_path / "state.git")
    ssh = local_ssh(tmp_path / "ssh")
    agent = StateClient(url, tmp_path / "agent", Identity("a1"), {"GIT_SSH_COMMAND": ssh})
    _, _, tip = agent.renew([], beat, None)
    assert tip is not None
    return url, agent, ssh


def test_agent_health_and_deploy_read_one_way_and_parse_a_heartbeat_alike(
        tmp_path: Path, beat: Heartbeat) -> None:
    url, agent, ssh = _state(tmp_path, beat)
    work = tmp_path / "control"
    try:
        assert agent.snapshot().agents["a1"] == beat  # the agent's own reading
        assert agent.remote.mirror == mirror_dir(url, tmp_path / "agent")
    finally:
        agent.close()

    facts = read_state_facts(url, work, ssh)
    assert facts.error is None, facts.error
    view = facts.agents["a1"]
    assert (view.state, view.reason, view.sandbox, view.metrics_port, view.paused_by) == (
        "blocked", beat.reason, "off", 9108, "a2")
    assert (work / "health" / mirror_dir(url, Path()).name / "HEAD").exists()

    reader = HeartbeatReader(url, work, ssh)
    assert reader.beat("a1") == beat  # every field, the newest ones too, parsed by records
    assert reader.mirror == mirror_dir(url, work / "heartbeats")
    assert reader.beat("nobody") is None


def test_the_deploy_poll_fetches_only_heartbeats(
    tmp_path: Path, beat: Heartbeat, monkeypatch: pytest.MonkeyPatch
):
    url, agent, ssh = _state(tmp_path, beat)
    agent.close()
    fetched: list[tuple[str, ...]] = []
    real_fetch = StateRemote.fetch

    def fetch(remote: StateRemote, prefixes: Sequence[str] = REF_PATTERNS) -> None:
        fetched.append(tuple(prefixes))
        real_fetch(remote, prefixes)

    monkeypatch.setattr(StateRemote, "fetch", fetch)
    assert HeartbeatReader(url, tmp_path, ssh).beat("a1") == beat
    assert fetched == [("refs/agents",)]
    mirror = mirror_dir(url, tmp_path / "heartbeats")
    assert set(list_refs(["refs/mirror"], git_dir=mirror)) == {"refs/mirror/agents/a1"}
    # A second reader (another deploy) on the same mirror: one fetch again, of nothing new.
    assert HeartbeatReader(url, tmp_path, ssh).beat("a1") == beat
    assert fetched == [("refs/agents",)] * 2


def test_the_refs_read_and_fetched_are_the_protocols() -> None:
    assert ref_patterns(REF_PATTERNS) == ["refs/heads/main", "refs/claims/*",
                                                "refs/agents/*"]  # fmt: skip
    assert fetch_specs(REF_PATTERNS) == ["+refs/heads/main:refs/mirror/heads/main",
                                         "+refs/claims/*:refs/mirror/claims/*",
                                         "+refs/agents/*:refs/mirror/agents/*"]  # fmt: skip


def test_health_and_deploy_reach_an_ssh_remote_with_the_ssh_command_given(
        tmp_path: Path, beat: Heartbeat) -> None:
    url, agent, _ = _state(tmp_path, beat)
    agent.close()
    marker = tmp_path / "ssh-ran"  # "ssh" to any host: notes its arguments, runs git's here
    fake_ssh = local_ssh(tmp_path / "noting",
                         f'echo "$@" >> {marker}\nfor last; do :; done\nexec sh -c "$last"')

    facts = read_state_facts(url, tmp_path / "control", fake_ssh)
    assert facts.error is None, facts.error
    assert facts.agents["a1"].state == "blocked"
    assert "state.invalid" in marker.read_text()
    marker.unlink()

    assert HeartbeatReader(url, tmp_path / "control", fake_ssh).beat("a1") == beat
    assert "state.invalid" in marker.read_text()
    marker.unlink()
    with pytest.raises(ClusterError):  # and without it: no such host
        HeartbeatReader(url, tmp_path / "elsewhere", "false").beat("a1")
    assert not marker.exists()


def test_every_read_of_the_refs_is_counted_by_where_it_reads(tmp_path: Path) -> None:
    """claude_cluster_state_reads_total counts each read of the repo's refs: through the
    mirror one fetch per read (it lists the refs and brings what is new at once), served by the
    state host; a repository on this machine (a plain path, file://) its ref files, in place."""
    from cluster.state.remote import StateRemote
    from tests.helpers import commit_files, make_state, task_doc, task_files

    repo = make_state(tmp_path)
    seen: list[str] = []
    ssh = {"GIT_SSH_COMMAND": local_ssh(tmp_path / "ssh")}
    remote = StateRemote(ssh_url(repo), tmp_path / "reader", ssh)
    remote.on_read = seen.append
    remote.refs()
    assert seen == ["fetch"]
    main = remote.refs()["refs/heads/main"]
    assert seen == ["fetch"] * 2  # nothing moved: one read all the same
    commit_files(repo, task_files([task_doc("counted")]), tmp_path / "person")
    moved = remote.refs()["refs/heads/main"]
    assert seen == ["fetch"] * 3
    assert moved != main and remote.store.commit(moved).parents == (main,)  # brought with it
    remote.close()
    for url in (str(repo), f"file://{repo}"):
        local = StateRemote(url, tmp_path / "local")
        local.on_read = seen.append
        assert local.refs()["refs/heads/main"] == moved
        local.close()
    assert seen == ["fetch"] * 3 + ["files"] * 2
    assert not (tmp_path / "local").exists()  # no mirror: the repository itself was read
