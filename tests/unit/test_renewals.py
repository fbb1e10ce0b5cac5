"""Renewals: a busy agent renews a due lease before it reads the repo, so a slow read (a
loaded state host) delays no renewal. Read first, a lease went unrenewed for the heartbeat
interval plus the read, and a read slower than the lease's slack lost it to a takeover. An
idle agent's heartbeats, which go out without a read while the state host streams, put off
no reconciling read."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cluster.agent import loop
from cluster.agent.config import AgentConfig
from cluster.agent.events import EventLog
from cluster.agent.loop import Agent
from tests.clients import state_client
from tests.helpers import Holding, SilentStream, commit_files, make_state, task_doc, task_files


def test_a_due_renewal_goes_before_the_read(tmp_path: Path) -> None:
    repo = make_state(tmp_path)
    commit_files(repo, task_files([task_doc("held")]), tmp_path / "person")
    config = AgentConfig.model_validate({"state": str(repo), "id": "a1",
                                         "specialties": ["backend"], "workdir": tmp_path / "w",
                                         "lease_seconds": 30, "heartbeat_seconds": 5})
    runner = Holding()
    with state_client(repo, tmp_path, "a1") as client:
        agent = Agent(config, runner, EventLog("a1", tmp_path / "events.jsonl"), client)
        calls: list[str] = []
        snapshot, renew = client.snapshot, client.renew

        def reading() -> Any:
            calls.append("read")
            return snapshot()

        def renewing(*args: Any, **kwargs: Any) -> Any:
            calls.append("renew")
            return renew(*args, **kwargs)

        client.snapshot, client.renew = reading, renewing  # type: ignore[method-assign]
        try:
            agent._iterate()  # the first read: the heartbeat, then the claim
            assert len(agent.st.running) == 1, agent.counters
            calls.clear()
            agent._iterate()  # nothing due: a read alone
            assert calls == ["read"]
            calls.clear()
            agent.st.last_renew = 0.0  # the renewal is due
            agent._iterate()
            assert calls == ["renew", "read"]
            assert agent.counters["lost"] == 0
        finally:
            runner.release.set()
            agent._shutdown()


def test_a_lease_running_out_wakes_only_the_first_in_its_line(tmp_path: Path) -> None:
    """Six agents, one holds a task: of the other five only the first three in the task's
    line (its holder left out, as when the lease has run out) wait for its lease's end, the
    holder for its own; the rest take it over at their turns after their next read. Every
    agent waited for every claim's expiry, and under load, with renewals late, each expiry
    was a read of the repo by the whole fleet."""
    from cluster.agent.choose import line, place
    from cluster.agent.loop import TOLD_PLACES

    repo = make_state(tmp_path)
    ids = [f"a{n}" for n in range(6)]
    runner = Holding()
    fleet = []
    with ExitStack() as stack:
        for agent_id in ids:
            config = AgentConfig.model_validate({
                "state": str(repo), "id": agent_id, "specialties": ["backend"],
                "workdir": tmp_path / "w", "lease_seconds": 60, "heartbeat_seconds": 20})
            client = stack.enter_context(state_client(repo, tmp_path, agent_id))
            agent = Agent(config, runner, EventLog(agent_id, None), client)
            stack.callback(agent._shutdown)
            agent._iterate()  # its first heartbeat
            fleet.append(agent)
        stack.callback(runner.release.set)
        commit_files(repo, task_files([task_doc("held")]), tmp_path / "person")
        for agent in fleet:
            agent._iterate()
        holder = next(a for a in fleet if a.st.running)
        waiting = {}
        for agent in fleet:
            snap = agent.client.snapshot()
            now = time.time()
            others = line(snap, agent.config.id, now)
            at = place(others, agent.config.id, "held", "backend", lapsed=holder.config.id)
            waiting[agent.config.id] = (at, any(why == "lease"
                                                for _, why in agent._deadlines(snap, now)))
        assert waiting[holder.config.id][1], waiting
        near = {a for a, (at, _) in waiting.items() if a != holder.config.id and at < TOLD_PLACES}
        woken = {a for a, (_, lease) in waiting.items() if lease and a != holder.config.id}
        assert len(near) == TOLD_PLACES and woken == near, waiting


def test_heartbeats_without_a_read_do_not_put_off_the_poll(
        tmp_path: Path, monkeypatch: Any) -> None:
    """An idle agent whose state host streams pushes its heartbeats without reading (they
    carry the last read's view) and reads at the poll, which counts from the last read.
    Counted from each wait, as it was, a heartbeat interval shorter than the poll put the
    read off at every beat, and a task the stream did not tell of was never seen (in CI a
    removed agent's released task lay unclaimed for 180 s)."""
    monkeypatch.setattr(loop, "STREAMED_POLL", 1.0)
    repo = make_state(tmp_path)
    config = AgentConfig.model_validate({"state": str(repo), "id": "a1",
                                         "specialties": ["backend"], "workdir": tmp_path / "w",
                                         "lease_seconds": 30, "heartbeat_seconds": 0.2,
                                         "poll_seconds": 0.05})
    runner = Holding()
    with state_client(repo, tmp_path, "a1") as client:
        agent = Agent(config, runner, EventLog("a1", None), client)
        agent.waker.stream = SilentStream()  # what an agent sees of a change no move names
        reads: list[float] = []
        snapshot = client.snapshot

        def reading() -> Any:
            reads.append(time.time())
            return snapshot()

        client.snapshot = reading  # type: ignore[method-assign]
        try:
            wait = agent._iterate()  # the first read, and the first heartbeat
            assert wait is not None and agent.st.waiting_for == "heartbeat", agent.st
            commit_files(repo, task_files([task_doc("untold")]), tmp_path / "person")
            deadline = time.time() + 10.0
            beats = 0
            while not agent.st.running:
                assert time.time() < deadline, (
                    f"the untold task was never read: {len(reads)} reads, {beats} heartbeats "
                    f"alone, waiting for {agent.st.waiting_for}")
                beats += agent.st.waiting_for == "heartbeat"
                agent.st.woke = agent.waker.wait(wait, refs=agent._would_claim())
                wait = agent._iterate()
                assert wait is not None
            assert beats >= 2, beats  # heartbeats went out between the reads, without one
            assert len(reads) < beats, (reads, beats)
        finally:
            runner.release.set()
            agent._shutdown()
