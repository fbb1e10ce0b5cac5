"""Main's moves streamed by a real state host over a real sshd: deployed agents hear of new work
from it (cluster.state.remotewatch), a landing is told with the tasks it brought, and a watch
cut on the state host is reported and taken up again while the agent polls meanwhile."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from conftest import DeployEnv  # type: ignore[import-not-found]

from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import RefUpdate
from cluster.state.ids import agent_ref
from cluster.state.remotewatch import (
    DEFAULT_COMMAND,
    Arrivals,
    RemoteWatch,
    ssh_argv,
    ssh_repo,
)
from cluster.testhosts.statehost import REPO
from cluster.transport import docker
from cluster.units import layout
from tests.helpers import commit_files, poll, task_doc, task_files


def _journal(env: DeployEnv, host: str) -> str:
    _, out, _ = env.exec(host, ["journalctl", "--no-pager", "-o", "cat", "-u", layout.UNIT_NAME])
    return str(out)


def _state_exec(env: DeployEnv, argv: list[str]) -> str:
    _, out, err = docker.exec_argv(docker.get(docker.client(), env.state.record.name), argv)
    return out + err


class _Heard:
    def __init__(self) -> None:
        self.moves: list[Arrivals] = []
        self.claims: list[str] = []

    def moved(self, arrivals: Arrivals = None) -> None:
        self.moves.append(arrivals)

    def claimed(self, keys: tuple[str, ...]) -> None:
        self.claims += keys


def test_deployed_agents_hear_of_main_from_the_state_host(converged: DeployEnv) -> None:
    for name in converged.names:
        poll(lambda name=name: "watch_live" in _journal(converged, name), 90,  # type: ignore[misc]
             lambda name=name: f"{name} streaming:\n{_journal(converged, name)[-2000:]}")  # type: ignore[misc]
    # One watcher per agent on the state host, each a lean process (stdlib, no site).
    listed = _state_exec(converged, ["ps", "-eo", "rss=,args="])
    watchers = [line for line in listed.splitlines() if DEFAULT_COMMAND in line
                and "ps -eo" not in line]  # fmt: skip
    assert len(watchers) >= len(converged.names), listed
    assert all(REPO in line for line in watchers), watchers


def test_a_watch_cut_on_the_state_host_is_reported_and_taken_up_again(
    converged: DeployEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the control host, through the state host's real sshd: every push to main comes
    down the stream; the watcher killed at the far end is seen as lost, the agent side is
    woken to read (it polls meanwhile), and the next try streams again."""
    state = converged.state
    monkeypatch.setenv("GIT_SSH_COMMAND", state.control_ssh_command)
    repo = ssh_repo(state.control_url)
    assert repo is not None
    argv = ssh_argv(repo, DEFAULT_COMMAND, {"GIT_SSH_COMMAND": state.control_ssh_command})
    said: list[tuple[str, str]] = []
    heard = _Heard()
    moves = heard.moves
    watch = RemoteWatch(argv).listen(heard, lambda what, detail: said.append((what, detail)))
    watch.start()
    try:
        poll(lambda: watch.live, 60, lambda: f"the stream to start: {said}")
        before = len(moves)
        work = tmp_path / "person"
        commit_files(state.control_url, task_files([task_doc("watched-1")]), work)
        # told as what it is: one task arrived (its id and specialty read on the state host)
        poll(lambda: (("watched-1", "backend"),) in moves[before:], 30,
             lambda: f"the task's arrival to come down the stream: {moves[before:]}")
        # a deployed agent claims it, and that comes down the stream too
        poll(lambda: "watched-1" in heard.claims, 60, lambda: f"its claim: {heard.claims}")
        _state_exec(converged, ["pkill", "-f", f"{DEFAULT_COMMAND} {shlex.quote(REPO)}"])
        poll(lambda: any(what == "watch_lost" for what, _ in said), 60,
             lambda: f"the cut to be reported: {said}")
        poll(lambda: [w for w, _ in said].count("watch_live") >= 2, 60,
             lambda: f"the stream to be taken up again: {said}")
        before = len(moves)
        commit_files(state.control_url, task_files([task_doc("watched-2")]), work)
        poll(lambda: len(moves) > before, 30, "a push after the cut to come down the stream")
    finally:
        watch.stop()


def test_a_state_client_reads_and_writes_over_the_ssh_it_was_given(
    deploy_env: DeployEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's ``env`` (its own ``GIT_SSH_COMMAND``: the fleet bench gives each simulated
    agent a connection of its own) carries its pushes too, not only its reads: with nothing
    in the process's environment that could reach the state host, a push over the process's
    own ssh was refused (no key for it, the host's key unknown)."""
    state = deploy_env.state
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh that could reach it either
    client = StateClient(state.control_url, tmp_path / "client", Identity("own-ssh"),
                         {"GIT_SSH_COMMAND": state.control_ssh_command})  # fmt: skip
    ref = agent_ref("own-ssh")
    try:
        assert "refs/heads/main" in client.remote.refs()
        store = client.remote.store
        commit = store.write_commit(store.single_file_tree("note", b"over its own ssh\n"), (),
                                    "t <t@localhost>", 0, "own ssh")  # fmt: skip
        report = client.remote.push([RefUpdate(ref, commit, None)])
        assert report.ok, report
        assert client.remote.refs().get(ref) == commit
        assert client.remote.push([RefUpdate(ref, None, commit)]).ok  # leave the repo as found
    finally:
        client.close()
