"""An agent's session with its ssh:// state host (cluster.state.session, cluster.state.sessiond).

The host's end is attacked as an agent gone wrong would: every push of the hook's own table
(tests.unit.test_hooks_lean.CASES), its objects carried in the request rather than in the
repository, lands exactly when the hook would take it, and a refused one leaves neither refs
nor objects behind; objects that are not what their names say, that are missing, of the wrong
kind, ref names that would forge a second line of the rules' input, reads outside the
protocol's refs and frames that are none are all refused with nothing written. The agent's
end reads and writes over it with no fetch and no push, and goes back to git when the host
cannot serve or sends what it should not.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.state.client import Identity, StateClient
from cluster.state.gitcmd import run_git
from cluster.state.gitobj import ObjectStore, TreeEditor, object_id
from cluster.state.localrefs import read_refs
from cluster.state.objsync import Obj, TooMuch, objects_for
from cluster.state.records import Result
from cluster.state.session import attach
from cluster.state.sessiond import SessionServer, serve
from cluster.state.wire import encode, read_frame
from tests.helpers import commit_files, git, local_ssh, make_state, ssh_url, task_doc, task_files
from tests.unit.test_hooks_lean import CASES, Repo, repo
from tests.unit.test_state_judged_writes import PROTOCOL_REFS, loose_objects, updates_of

__all__ = ["repo"]  # the fixture, shared with test_hooks_lean


@pytest.fixture
def server(repo: Repo) -> Iterator[SessionServer]:
    served = SessionServer(repo.path)
    yield served
    served.close()


def ask(server: SessionServer, header: dict[str, Any],
        objects: list[Obj] | None = None) -> dict[str, Any]:  # fmt: skip
    got = read_frame(io.BytesIO(server.answer(header, objects or [])))
    assert got is not None
    return got[0]


def carried(repo: Repo, name: str) -> tuple[list[str], bool, list[Obj]]:
    """Case ``name`` as an agent sends it: the objects it made, taken back out of the
    repository (they travel in the request)."""
    before = loose_objects(repo.path)
    lines, ok = CASES[name](repo)
    objects = []
    for path in sorted(loose_objects(repo.path) - before):
        raw = zlib.decompress(path.read_bytes())
        head, _, body = raw.partition(b"\0")
        objects.append((path.parent.name + path.name, head.split()[0].decode(), body))
        path.unlink()
    return lines, ok, objects


def in_repo(repo: Repo, sha: str) -> bool:
    """Is ``sha`` stored in the repository (loose, as the session moves objects in; git's
    own ``cat-file -e`` would say yes to the empty tree, which it knows without storing)."""
    return (repo.path / "objects" / sha[:2] / sha[2:]).exists()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_write_lands_exactly_when_the_hook_would_take_it(
        repo: Repo, server: SessionServer, name: str) -> None:
    lines, ok, objects = carried(repo, name)
    updates = updates_of(lines)
    before = read_refs(repo.path, PROTOCOL_REFS)
    reply = ask(server, {"op": "write", "atomic": True,
                         "updates": [[u.ref, u.new, u.old] for u in updates]}, objects)
    after = read_refs(repo.path, PROTOCOL_REFS)
    assert "declined" not in reply, reply
    landed = not reply["rejected"]
    assert landed == ok, f"{name}: {'refused' if ok else 'landed'}: {reply}"
    if landed:
        assert all(after.get(u.ref) == u.new for u in updates)
        assert all(in_repo(repo, sha) for sha, _, _ in objects)
    else:
        assert after == before, f"{name}: refused, yet refs changed"
        assert reply["printed"], "a refusal says why"
        assert not any(in_repo(repo, sha) for sha, _, _ in objects), "a refusal's objects stayed"
    assert not list((repo.path / "objects").glob("incoming-*")), "a quarantine was left"


def claim_write(repo: Repo) -> tuple[list[str], list[Obj]]:
    lines, ok, objects = carried(repo, "first claim")
    assert ok
    return lines, objects


def write_of(lines: list[str]) -> dict[str, Any]:
    return {"op": "write", "updates": [[u.ref, u.new, u.old] for u in updates_of(lines)]}


def test_an_object_that_is_not_what_its_name_says_is_refused(
        repo: Repo, server: SessionServer) -> None:
    lines, objects = claim_write(repo)
    sha, kind, body = objects[0]
    forged = [(sha, kind, body + b"\n# planted"), *objects[1:]]
    before = read_refs(repo.path, PROTOCOL_REFS)
    reply = ask(server, write_of(lines), forged)
    assert "not what its name says" in reply["declined"]
    assert read_refs(repo.path, PROTOCOL_REFS) == before
    assert not in_repo(repo, object_id(kind, body + b"\n# planted"))


@pytest.mark.parametrize("drop", ["tree", "blob"])
def test_a_write_missing_what_its_commit_reaches_is_refused(
        repo: Repo, server: SessionServer, drop: str) -> None:
    lines, objects = claim_write(repo)
    kept = [o for o in objects if o[1] != drop]
    before = read_refs(repo.path, PROTOCOL_REFS)
    reply = ask(server, write_of(lines), kept)
    assert "in neither the write nor the repository" in reply["declined"]
    assert read_refs(repo.path, PROTOCOL_REFS) == before
    assert not any(in_repo(repo, sha) for sha, _, _ in kept)


def test_an_object_of_another_kind_than_its_place_says_is_refused(
        repo: Repo, server: SessionServer) -> None:
    """A commit whose tree is a blob: git's connectivity check refuses it, and so does this."""
    blob = repo.store.write_blob(b"not a tree\n")
    ident = "t <t@example.invalid> 1 +0000"
    body = f"tree {blob}\nauthor {ident}\ncommitter {ident}\n\nx\n".encode()
    commit = object_id("commit", body)
    reply = ask(server, write_of([f"{'0' * 40} {commit} refs/claims/t1"]),
                [(commit, "commit", body)])
    assert "is a blob where a tree belongs" in reply["declined"]
    assert not in_repo(repo, commit)


@pytest.mark.parametrize("ref", ["refs/claims/t1\n0000 ffff refs/heads/main", "refs/claims/t 1",
                                 "refs/claims/t1\0", "heads/main", ""])
def test_a_ref_name_that_would_forge_the_rules_input_is_refused(
        repo: Repo, server: SessionServer, ref: str) -> None:
    lines, objects = claim_write(repo)
    new = updates_of(lines)[0].new
    before = read_refs(repo.path, PROTOCOL_REFS)
    reply = ask(server, {"op": "write", "updates": [[ref, new, None]]}, objects)
    assert "updates must be" in reply["declined"]
    assert read_refs(repo.path, PROTOCOL_REFS) == before


@pytest.mark.parametrize("prefixes", [["refs/../../etc"], ["refs"], ["HEAD"], "refs/claims", []])
def test_a_read_is_of_the_protocols_refs_alone(
        server: SessionServer, prefixes: Any) -> None:
    reply = ask(server, {"op": "refs", "prefixes": prefixes})
    assert "prefixes must be some of" in reply["declined"]


@pytest.mark.parametrize("frame", [
    b"\x00\x00\x00\x05\x00\x00\x00\x00{\"op\"",  # cut short
    b"\xff\xff\xff\xff\x00\x00\x00\x00",  # a header over the limit
    b"\x00\x00\x00\x02\x00\x00\x00\x03{}abc",  # bodies no entry lists
    b"\x00\x00\x00\x02\x00\x00\x00\x00[]",  # not an object
    encode({"op": "write"})[:-1] + b"x",  # not JSON
])
def test_what_is_no_frame_ends_the_session_with_nothing_written(
        repo: Repo, frame: bytes) -> None:
    before = read_refs(repo.path, PROTOCOL_REFS)
    out = io.BytesIO()
    assert serve(repo.path, io.BytesIO(frame), out) == 1
    assert out.getvalue() == b""
    assert read_refs(repo.path, PROTOCOL_REFS) == before


def test_a_stale_old_value_is_rejected_as_a_push_would_be(
        repo: Repo, server: SessionServer) -> None:
    lines, objects = claim_write(repo)
    update = updates_of(lines)[0]
    reply = ask(server, {"op": "write", "updates": [[update.ref, update.new, repo.held]]},
                objects)
    assert reply["rejected"] == [update.ref]
    assert "refs/claims/t1" not in read_refs(repo.path, PROTOCOL_REFS)


# -- the agent's end, over the real ssh transport's shape (tests.helpers.local_ssh) ---------


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[tuple[StateClient, Path, Path]]:
    state = make_state(tmp_path, {"fold_delay_seconds": 3600})
    commit_files(state, task_files([task_doc(f"t{i}") for i in range(3)]), tmp_path / "person")
    log = tmp_path / "ssh.log"
    body = f'for last; do :; done\necho "$last" >> {log}\nexec sh -c "$last"'
    client = StateClient(ssh_url(state), tmp_path / "agent", Identity("a1"),
                         {"GIT_SSH_COMMAND": local_ssh(tmp_path / "ssh", body)})
    yield client, state, log
    client.close()


def test_an_agents_reads_and_writes_take_one_session_and_no_fetch_or_push(
        ssh_agent: tuple[StateClient, Path, Path]) -> None:
    """A claim, its renewal with a heartbeat and its result: the repo ends as the push path
    leaves it, and the only command the agent ran on the host is the session."""
    client, state, log = ssh_agent
    reads: list[str] = []
    client.remote.on_read = reads.append
    assert attach(client.remote, "claude-cluster-session") is not None
    snap = client.snapshot()
    held = client.claim(snap, snap.tasks["t0"], 60.0)
    assert not isinstance(held, Result) and held is not None
    renewed, lost, _ = client.renew([held], None, None)
    assert not lost
    assert client.finish(renewed[held.key], Result(task="t0", status="succeeded", attempt=1,
                                                   agent="a1"))
    after = client.snapshot()
    assert set(reads) == {"session"}, reads
    assert log.read_text().splitlines() == [f"claude-cluster-session {state}"]
    tip = read_refs(state, ["refs/claims"])["refs/claims/t0"]
    assert "result t0: succeeded" in git(["log", "-1", "--format=%s", tip], state)
    assert after.claims["t0"].tip == tip
    assert git(["fsck", "--connectivity-only", "--no-dangling"], state).strip() == ""


def test_a_host_without_the_session_is_read_and_written_through_git(
        ssh_agent: tuple[StateClient, Path, Path]) -> None:
    client, state, log = ssh_agent
    reads: list[str] = []
    client.remote.on_read = reads.append
    session = attach(client.remote, "no-such-session-command")
    assert session is not None
    snap = client.snapshot()
    held = client.claim(snap, snap.tasks["t1"], 60.0)
    assert held is not None and not isinstance(held, Result)
    assert reads == ["fetch"] * len(reads) and reads
    assert "refs/claims/t1" in read_refs(state, ["refs/claims"])
    assert "no-such-session-command" in log.read_text() and session.lost


@pytest.mark.parametrize("lie", ["false name", "ref not asked for"])
def test_objects_a_host_sends_under_false_names_are_never_stored(
        ssh_agent: tuple[StateClient, Path, Path], tmp_path: Path, lie: str) -> None:
    """A host that answers a read with an object that is not what its name says, or with a
    ref outside what was asked: the session is dropped, nothing of it is in the mirror, the
    read is a fetch."""
    client, state, _ = ssh_agent
    body = b"planted\n"
    liar = tmp_path / "liar"
    reply_hello = encode({"protocol": 1})
    ref = "refs/heads/main" if lie == "false name" else "refs/heads/planted"
    sha = "1" * 40 if lie == "false name" else object_id("blob", body)
    reply_refs = encode({"refs": {ref: sha}, "complete": True}, [(sha, "blob", body)])
    said = tmp_path / "said"
    said.write_bytes(reply_hello + reply_refs)
    liar.write_text(f"#!/bin/sh\ncat {said}\nexec cat > /dev/null\n")
    liar.chmod(0o755)
    reads: list[str] = []
    client.remote.on_read = reads.append
    assert attach(client.remote, str(liar)) is not None
    refs = client.remote.refs()
    assert reads == ["fetch"]
    assert refs["refs/heads/main"] == read_refs(state, ["refs/heads/main"])["refs/heads/main"]
    assert not (client.remote.mirror / "objects" / "11").exists()
    assert not (client.remote.mirror / "objects" / object_id("blob", body)[:2] /
                object_id("blob", body)[2:]).exists()


# -- what travels: exactly what the other side lacks, whole --------------------------------


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_what_is_sent_makes_the_other_side_whole(tmp_path_factory: Any, data: Any) -> None:
    """A history of task files changed, added and removed along a chain with side branches
    merged in; the other side holds some of its commits whole. What objects_for sends, added
    to it, makes every tip whole there (git's fsck says so), once each, none it was known to
    hold."""
    base = tmp_path_factory.mktemp("sync")
    source = base / "source.git"
    run_git(["init", "--quiet", "--bare", str(source)])
    store = ObjectStore(source)
    ident = "t <t@example.invalid>"
    commits: list[str] = []
    files: dict[str, str] = {}
    for step in range(data.draw(st.integers(1, 12))):
        for name in data.draw(st.lists(st.sampled_from(["a", "b", "d/c", "d/e/f", "g"]),
                                       min_size=1, max_size=3)):
            if name in files and data.draw(st.booleans()):
                del files[name]
            else:
                files[name] = store.write_blob(f"{name} {step}\n".encode())
        editor = TreeEditor(store, None)
        for name, blob in files.items():
            editor.put(name, blob)
        parents: tuple[str, ...] = ()
        if commits and data.draw(st.integers(0, 4)):  # mostly a chain, now and then a root
            merged = data.draw(st.lists(st.sampled_from(commits), max_size=1))
            parents = tuple(dict.fromkeys([commits[-1], *merged]))
        commits.append(store.write_commit(editor.write(), parents, ident, step, f"c{step}"))
    held = data.draw(st.lists(st.sampled_from(commits), max_size=3, unique=True))
    tips = data.draw(st.lists(st.sampled_from(commits), min_size=1, max_size=3, unique=True))
    other = base / "other.git"
    run_git(["init", "--quiet", "--bare", str(other)])
    for i, sha in enumerate(held):
        run_git(["fetch", "--quiet", str(source), f"{sha}:refs/held/{i}"], git_dir=other)
    known = set(held)
    sent = objects_for(store, tips, known, 4096)
    assert known == set(held), "objects_for must not change what it was told is known"
    into = ObjectStore(other)
    for sha, kind, body in sent:
        assert into.write(kind, body) == sha
    into.close()
    store.close()
    # Nothing known travels again, nor anything reached from a known commit's tree by the
    # parent chain (asserted by test_more_than_a_session...): a tree or blob may, when no
    # parent shows the other side has it (an unrelated root's), or a commit the other side
    # holds as an ancestor alone (the walk stops at known commits, not at their history).
    assert not known & {sha for sha, _, _ in sent}
    assert len(sent) == len({sha for sha, _, _ in sent}), "an object sent twice"
    for i, tip in enumerate(tips):
        run_git(["update-ref", f"refs/tips/{i}", tip], git_dir=other)
    assert run_git(["fsck", "--connectivity-only", "--no-dangling"], git_dir=other,
                   check=False).returncode == 0


def test_more_than_a_session_carries_is_left_to_git(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    store = ObjectStore(state)
    main = read_refs(state, ["refs/heads/main"])["refs/heads/main"]
    tip = main
    for n in range(6):
        tip = store.write_commit(store.commit(main).tree, (tip,), "t <t@e.invalid>", n, "x")
    with pytest.raises(TooMuch):
        objects_for(store, [tip], set(), 5)
    sent = objects_for(store, [tip], {main}, 10)  # from a known main: six commits alone
    assert [kind for _, kind, _ in sent] == ["commit"] * 6
    store.close()
