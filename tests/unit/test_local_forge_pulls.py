"""LocalForge's pull-request conversations: numbers, reviews with real diff hunks, replies,
comments, all as files beside the records, with real git remotes in tmp_path."""

from __future__ import annotations

import json
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cluster.agent.followup import PullForge
from cluster.agent.forge import ForgeError, ForgeNotFound, repo_slug
from cluster.agent.forge_local import LocalForge
from tests.helpers import git
from tests.unit.test_workspace import make_remote, remote_sha

# Two changes 20 lines apart in a 40-line module: two hunks in the diff.
BEFORE = "".join(f"value_{n} = {n}\n" for n in range(1, 41))
AFTER = (BEFORE.replace("value_5 = 5\n", "value_5 = 50\n")
         .replace("value_30 = 30\n", "def total(a, b):\n    return a + b\n"))


def push_files(remote: Path, branch: str, files: dict[str, str], work: Path) -> str:
    """Commit ``files`` on ``branch`` (from main, or its own tip if it exists) and push it."""
    if not work.exists():
        git(["clone", "-q", str(remote), str(work)], remote.parent)
    git(["fetch", "-q", "origin"], work)
    start = f"origin/{branch}" if remote_sha(remote, f"refs/heads/{branch}") else "origin/main"
    git(["checkout", "-q", "-B", branch, start], work)
    for name, text in files.items():
        (work / name).write_text(text)
    git(["add", "-A"], work)
    git(["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", f"change {branch}"], work)
    git(["push", "-q", "origin", f"HEAD:refs/heads/{branch}"], work)
    sha = remote_sha(remote, f"refs/heads/{branch}")
    assert sha is not None
    return sha


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = make_remote(tmp_path)
    push_files(bare, "main", {"module.py": BEFORE}, tmp_path / "seed-work")
    return bare


def opened(forge: LocalForge, remote: Path, tmp_path: Path, branch: str) -> int:
    push_files(remote, branch, {"module.py": AFTER}, tmp_path / f"work-{branch.replace('/', '-')}")
    forge.open_or_update_pr(str(remote), branch, "main", f"Work on {branch}", "body")
    numbers = [p.number for p in forge.open_pulls(str(remote)) if p.head_branch == branch]
    assert len(numbers) == 1
    return numbers[0]


def open_in_process(records: str, remote: str, branch: str, ready: threading.Barrier) -> str:
    ready.wait()
    return LocalForge(Path(records)).open_or_update_pr(remote, branch, "main", "T", "b")


def test_pull_requests_get_the_next_free_number_and_keep_it(tmp_path: Path,
                                                            remote: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    assert forge.open_pulls(str(remote)) == []
    assert opened(forge, remote, tmp_path, "cluster/one") == 1
    assert opened(forge, remote, tmp_path, "cluster/two") == 2
    one = forge.pull(str(remote), 1)
    record = forge.record_path(str(remote), "cluster/one")
    assert (one.head_branch, one.base, one.state, one.author) == ("cluster/one", "main",
                                                                  "open", "local")
    assert one.url == record.resolve().as_uri()
    assert one.head_sha == remote_sha(remote, "refs/heads/cluster/one")
    # Closed (as a person would close it): no longer open, and reopening keeps number 1.
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "state": "closed"}))
    assert [p.number for p in forge.open_pulls(str(remote))] == [2]
    assert forge.pull(str(remote), 1).state == "closed"
    forge.open_or_update_pr(str(remote), "cluster/one", "main", "Again", "b")
    assert [p.number for p in forge.open_pulls(str(remote))] == [1, 2]
    assert opened(forge, remote, tmp_path, "cluster/three") == 3
    with pytest.raises(ForgeNotFound, match="#9: no such pull request"):
        forge.pull(str(remote), 9)


def test_head_is_the_branch_tip_after_a_push(tmp_path: Path, remote: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    number = opened(forge, remote, tmp_path, "cluster/t1")
    first = forge.pull(str(remote), number).head_sha
    pushed = push_files(remote, "cluster/t1", {"more.txt": "x\n"}, tmp_path / "work-cluster-t1")
    assert pushed != first and forge.pull(str(remote), number).head_sha == pushed
    assert json.loads(forge.record_path(str(remote), "cluster/t1").read_text())["head"] == first
    git(["--git-dir", str(remote), "update-ref", "-d", "refs/heads/cluster/t1"], tmp_path)
    assert forge.pull(str(remote), number).head_sha == first  # gone: the record's head


def test_records_from_before_numbering_all_say_one(tmp_path: Path, remote: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    for branch, state in (("cluster/old", "closed"), ("cluster/new", "open")):
        push_files(remote, branch, {"module.py": AFTER}, tmp_path / "work")
        forge.open_or_update_pr(str(remote), branch, "main", "T", "b")
        path = forge.record_path(str(remote), branch)
        path.write_text(json.dumps({**json.loads(path.read_text()), "number": 1,
                                    "state": state}))
    assert forge.pull(str(remote), 1).head_branch == "cluster/new"  # the open one is #1
    assert opened(forge, remote, tmp_path, "cluster/next") == 2


def test_concurrent_opens_never_share_a_number(tmp_path: Path, remote: Path) -> None:
    branches = [f"cluster/t{n}" for n in range(12)]
    for branch in branches:
        push_files(remote, branch, {"module.py": AFTER + branch}, tmp_path / "work")
    records = tmp_path / "prs"
    ready = threading.Barrier(8)

    def open_one(branch: str) -> str:
        ready.wait(timeout=30)
        return LocalForge(records).open_or_update_pr(str(remote), branch, "main", "T", "b")

    with ThreadPoolExecutor(8) as threads:
        list(threads.map(open_one, branches[:8]))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as processes:
            processes.starmap(open_in_process,
                         [(str(records), str(remote), b, barrier) for b in branches[8:]])
    pulls = LocalForge(records).open_pulls(str(remote))
    assert sorted(p.number for p in pulls) == list(range(1, 13))
    assert sorted(p.head_branch for p in pulls) == sorted(branches)


def test_a_review_round_trip_with_the_real_diff_hunks(tmp_path: Path, remote: Path) -> None:
    forge: PullForge = LocalForge(tmp_path / "prs")
    assert isinstance(forge, LocalForge)
    number = opened(forge, remote, tmp_path, "cluster/t1")
    head = forge.pull(str(remote), number).head_sha
    new_lines = AFTER.splitlines()
    early, late = new_lines.index("value_5 = 50") + 1, new_lines.index("    return a + b") + 1
    review = forge.add_review(str(remote), number, "alice", "CHANGES_REQUESTED", "Two things.",
                              [("module.py", early, "why 50?"),
                               ("module.py", late, "name the result")])
    [got] = forge.reviews(str(remote), number)
    assert (got.id, got.author, got.state, got.body, got.commit_id) == (
        review, "alice", "CHANGES_REQUESTED", "Two things.", head)
    first, second = forge.review_comments(str(remote), number)
    assert [(c.path, c.line, c.body, c.review_id, c.in_reply_to, c.author) for c in
            (first, second)] == [("module.py", early, "why 50?", review, None, "alice"),
                                 ("module.py", late, "name the result", review, None, "alice")]
    assert len({review, first.id, second.id}) == 3
    # Each hunk is the real diff's hunk holding the line, from its header up to that line.
    diff = git(["--git-dir", str(remote), "diff", "main...cluster/t1", "--", "module.py"],
               tmp_path).splitlines()
    headers = [i for i, text in enumerate(diff) if text.startswith("@@")]
    assert len(headers) == 2
    upto_early = diff.index("+value_5 = 50")
    assert first.diff_hunk == "\n".join(diff[headers[0]:upto_early + 1])
    upto_late = diff.index("+    return a + b")
    assert second.diff_hunk == "\n".join(diff[headers[1]:upto_late + 1])
    assert second.diff_hunk.startswith("@@ ") and second.diff_hunk.endswith("+    return a + b")
    # A line no hunk holds, a bad state, an unknown pull request: clear errors, nothing written.
    with pytest.raises(ForgeError, match=r"line 17 of module\.py is not in the pull request's"):
        forge.add_review(str(remote), number, "alice", "COMMENTED", "", [("module.py", 17, "x")])
    with pytest.raises(ForgeError, match="review state 'LGTM' is not one of"):
        forge.add_review(str(remote), number, "alice", "LGTM", "", [])  # type: ignore[arg-type]
    with pytest.raises(ForgeNotFound):
        forge.add_review(str(remote), 7, "alice", "APPROVED", "ok", [])
    assert len(forge.reviews(str(remote), number)) == 1
    assert forge.failed_checks(str(remote), head) == []
    assert forge.can_write(str(remote), "anyone-at-all")


def test_replies_thread_under_the_first_comment(tmp_path: Path, remote: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    number = opened(forge, remote, tmp_path, "cluster/t1")
    line = AFTER.splitlines().index("def total(a, b):") + 1
    forge.add_review(str(remote), number, "alice", "COMMENTED", "", [("module.py", line, "doc?")])
    [root] = forge.review_comments(str(remote), number)
    forge.reply(str(remote), number, root.id, "Added a docstring.")
    answer = forge.review_comments(str(remote), number)[-1]
    forge.add_reply(str(remote), number, answer.id, "alice", "Thanks")  # a reply to a reply
    thread = forge.review_comments(str(remote), number)
    assert [(c.author, c.body, c.in_reply_to) for c in thread] == [
        ("alice", "doc?", None), ("local", "Added a docstring.", root.id),
        ("alice", "Thanks", root.id)]
    assert all((c.path, c.line, c.diff_hunk) == (root.path, root.line, root.diff_hunk)
               for c in thread)
    assert [c.id for c in thread] == sorted({c.id for c in thread})
    with pytest.raises(ForgeNotFound, match="no review comment 999"):
        forge.reply(str(remote), number, 999, "to nobody")
    assert len(forge.review_comments(str(remote), number)) == 3


def test_comments_with_ids_authors_and_old_entries(tmp_path: Path, remote: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    number = opened(forge, remote, tmp_path, "cluster/t1")
    path = tmp_path / "prs" / repo_slug(str(remote)) / "comments" / f"{number}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"at": 5.0, "body": "written before ids"}) + "\n")
    said = forge.add_comment(str(remote), number, "bob", "/cluster fix")
    forge.comment(str(remote), number, "Done.")
    comments = forge.pull_comments(str(remote), number)
    assert [(c.author, c.body) for c in comments] == [
        ("local", "written before ids"), ("bob", "/cluster fix"), ("local", "Done.")]
    assert comments[0].created_at == 5.0 and comments[1].id == said
    assert len({c.id for c in comments}) == 3
    review = forge.add_review(str(remote), number, "bob", "APPROVED", "ok")
    assert review > max(c.id for c in comments)  # one id space per repo
    with pytest.raises(ForgeNotFound):
        forge.add_comment(str(remote), 5, "bob", "on nothing")


def test_malformed_lines_are_skipped_and_appends_still_work(tmp_path: Path,
                                                            remote: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    number = opened(forge, remote, tmp_path, "cluster/t1")
    line = AFTER.splitlines().index("def total(a, b):") + 1
    forge.add_review(str(remote), number, "alice", "COMMENTED", "", [("module.py", line, "a")])
    [root] = forge.review_comments(str(remote), number)
    folder = tmp_path / "prs" / repo_slug(str(remote))
    junk = ['not json', '[1, 2]', '{"id": "x", "author": 3}', '{"id": 0, "body": "zero"}',
            '\xff\xfe', '{"id": 40, "author": "a", "state": "WHATEVER", "body": "",'
            ' "submitted_at": 1, "commit_id": "c"}']
    for kind in ("reviews", "review-comments", "comments"):
        (folder / kind).mkdir(exist_ok=True)
        with (folder / kind / f"{number}.jsonl").open("a", encoding="utf-8") as handle:
            handle.write("\n".join(junk) + '\n{"torn": ')  # a crash mid-append, last
    assert len(forge.reviews(str(remote), number)) == 1
    assert forge.review_comments(str(remote), number) == [root]
    assert forge.pull_comments(str(remote), number) == []
    forge.reply(str(remote), number, root.id, "still works")
    forge.comment(str(remote), number, "and this")
    assert [c.body for c in forge.review_comments(str(remote), number)] == ["a", "still works"]
    assert [c.body for c in forge.pull_comments(str(remote), number)] == ["and this"]
    record = forge.record_path(str(remote), "cluster/t1")
    record.write_text("{torn")
    assert forge.open_pulls(str(remote)) == []  # an unreadable record is no pull request ...
    with pytest.raises(ForgeError, match="is unreadable; repair or remove it"):
        forge.open_or_update_pr(str(remote), "cluster/t1", "main", "T", "b")
    assert record.read_text() == "{torn"  # ... and is not overwritten
