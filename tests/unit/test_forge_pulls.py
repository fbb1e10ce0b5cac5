"""GitHubForge as pull-request Conversations, through real PyGithub and the GitHub stand-in."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.forge import ForgeAuthError, ForgeError, ForgeNotFound, ForgeRateLimited
from cluster.agent.forge_github import GitHubForge
from cluster.agent.pulls import CheckFailure, Conversations
from cluster.intake.webhook import signature
from cluster.secret import Secret
from tests.fakes.github_api import FakeGitHub
from tests.unit.test_forges import github, push_branch
from tests.unit.test_workspace import make_remote, remote_sha

REPO = "octo/hello"
HUNK = "@@ -1,3 +1,3 @@\n def add(a, b):\n-    return a - b\n+    return a + b"


@pytest.fixture
def forge(github_api: FakeGitHub) -> GitHubForge:
    github_api.add_repo(REPO)
    return github(github_api)


def listed(api: FakeGitHub, suffix: str) -> list[dict[str, list[str]]]:
    """The queries of the GET requests whose path ends with ``suffix``."""
    return [r.query for r in api.requests if r.method == "GET" and r.path.endswith(suffix)]


def test_pull_and_open_pulls(github_api: FakeGitHub, forge: GitHubForge) -> None:
    first = github_api.add_pull(REPO, "cluster/t1", title="Fix add")
    github_api.add_issue(REPO, "an issue between them")
    second = github_api.add_pull(REPO, "cluster/t2", author="alice", head_sha="ab" * 20)
    closed = github_api.add_pull(REPO, "cluster/t3")
    github_api.repos[REPO].pulls[closed]["state"] = "closed"

    conversations: Conversations = forge  # GitHubForge is what intake and the runner use
    pull = conversations.pull(REPO, second)
    assert (pull.repo, pull.number, pull.head_branch, pull.head_sha, pull.base) == (
        REPO, second, "cluster/t2", "ab" * 20, "main")
    assert (pull.state, pull.author) == ("open", "alice")
    assert pull.url == f"{github_api.url}/{REPO}/pull/{second}"
    assert forge.pull(REPO, closed).state == "closed"
    assert [p.number for p in forge.open_pulls(REPO)] == [first, second]
    with pytest.raises(ForgeNotFound, match=f"{REPO}#99"):
        forge.pull(REPO, 99)


def test_reviews_and_their_line_comments(github_api: FakeGitHub, forge: GitHubForge) -> None:
    number = github_api.add_pull(REPO, "cluster/t1")
    before = time.time()
    review = github_api.add_review(REPO, number, "alice", "changes_requested", "Two things.", [
        {"path": "calc.py", "line": 2, "body": "This subtracts.", "diff_hunk": HUNK},
        {"path": "test_calc.py", "line": 5, "body": "Test negatives too."},
    ])
    approval = github_api.add_review(REPO, number, "bob", "APPROVE")

    reviews = forge.reviews(REPO, number)
    assert [(r.id, r.author, r.state, r.body) for r in reviews] == [
        (review, "alice", "CHANGES_REQUESTED", "Two things."), (approval, "bob", "APPROVED", "")]
    head = forge.pull(REPO, number).head_sha
    assert all(r.commit_id == head and before - 1 <= r.submitted_at <= time.time() + 1
               for r in reviews)

    comments = forge.review_comments(REPO, number)
    assert [(c.author, c.path, c.line, c.body, c.review_id, c.in_reply_to) for c in comments] == [
        ("alice", "calc.py", 2, "This subtracts.", review, None),
        ("alice", "test_calc.py", 5, "Test negatives too.", review, None),
    ]
    assert comments[0].diff_hunk == HUNK and comments[1].diff_hunk.startswith("@@ ")
    assert comments[0].created_at >= before - 1
    # GitHub leaves in_reply_to_id out of a thread's first comment; the forge does not fetch
    # each such comment again to learn that.
    assert listed(github_api, f"/pulls/comments/{comments[0].id}") == []


def test_replies_land_in_the_thread(github_api: FakeGitHub, forge: GitHubForge) -> None:
    number = github_api.add_pull(REPO, "cluster/t1")
    github_api.add_review(REPO, number, "alice", "CHANGES_REQUESTED", "", [
        {"path": "calc.py", "line": 2, "body": "one"},
        {"path": "calc.py", "line": 9, "body": "two"},
    ])
    one, two = (c.id for c in forge.review_comments(REPO, number))
    answer = github_api.add_review_comment(REPO, number, "alice", "and also", "x", None,
                                           in_reply_to=two)

    forge.reply(REPO, number, one, "Fixed in abc123.")
    forge.reply(REPO, number, answer, "Done too.")  # a reply to a reply joins the thread

    threads = [(c.author, c.body, c.in_reply_to, c.path, c.line)
               for c in forge.review_comments(REPO, number)]
    assert threads == [
        ("alice", "one", None, "calc.py", 2),
        ("alice", "two", None, "calc.py", 9),
        ("alice", "and also", two, "calc.py", 9),
        ("cluster-bot", "Fixed in abc123.", one, "calc.py", 2),
        ("cluster-bot", "Done too.", two, "calc.py", 9),
    ]
    raw = github_api.review_comments(REPO, number)
    assert [c.get("in_reply_to_id") for c in raw] == [None, None, two, one, two]
    with pytest.raises(ForgeNotFound, match="reply to review comment 4242"):
        forge.reply(REPO, number, 4242, "nobody hears this")
    with pytest.raises(ForgeError, match="HTTP 422"):
        forge.reply(REPO, number, one, "")
    assert len(github_api.review_comments(REPO, number)) == 5


def test_lists_come_whole_across_pages(github_api: FakeGitHub) -> None:
    github_api.add_repo(REPO)
    forge = github(github_api, per_page=25)
    number = github_api.add_pull(REPO, "cluster/t1")
    for index in range(120):
        github_api.add_review_comment(REPO, number, "alice", f"note {index}", "calc.py", index + 1)
    for index in range(40):
        github_api.add_comment(REPO, number, f"comment {index}", author="bob")

    comments = forge.review_comments(REPO, number)
    assert [c.body for c in comments] == [f"note {i}" for i in range(120)]
    assert [c.line for c in comments] == list(range(1, 121))
    pages = listed(github_api, f"/pulls/{number}/comments")
    assert sorted(q.get("page", ["1"])[0] for q in pages) == ["1", "2", "3", "4", "5"]
    assert all(q["per_page"] == ["25"] for q in pages)
    # Each lone line comment made its own COMMENTED review, as on GitHub.
    reviews = forge.reviews(REPO, number)
    assert len(reviews) == 120 and {r.state for r in reviews} == {"COMMENTED"}
    assert [c.body for c in forge.pull_comments(REPO, number)] == [
        f"comment {i}" for i in range(40)]


def test_comment_on_a_pull_request_shares_the_issue_numbers(
        github_api: FakeGitHub, forge: GitHubForge) -> None:
    github_api.add_issue(REPO, "first comes an issue")
    number = github_api.add_pull(REPO, "cluster/t1")
    github_api.add_comment(REPO, number, "/cluster fix please", author="alice")
    forge.comment(REPO, number, "On it.")
    found = forge.pull_comments(REPO, number)
    assert [(c.author, c.body) for c in found] == [
        ("alice", "/cluster fix please"), ("cluster-bot", "On it.")]
    assert found[0].id < found[1].id and found[0].created_at > 0


def test_write_access(github_api: FakeGitHub, forge: GitHubForge) -> None:
    for login, role in [("ada", "admin"), ("max", "maintain"), ("wes", "write"),
                        ("tia", "triage"), ("rea", "read"), ("nia", "none")]:
        github_api.set_permission(REPO, login, role)
    allowed = {login: forge.can_write(REPO, login)
               for login in ("ada", "max", "wes", "tia", "rea", "nia", "stranger", "octo", "")}
    assert allowed == {"ada": True, "max": True, "wes": True, "tia": False, "rea": False,
                       "nia": False, "stranger": False, "octo": True, "": False}
    with pytest.raises(ForgeNotFound, match="octo/absent"):
        forge.can_write("octo/absent", "ada")


def test_failed_checks_are_failures_and_each_contexts_latest_status(
        github_api: FakeGitHub, forge: GitHubForge) -> None:
    number = github_api.add_pull(REPO, "cluster/t1")
    sha = forge.pull(REPO, number).head_sha
    tests = github_api.add_check_run(REPO, sha, "tests", "failure", "2 failed",
                                     "FAILED test_calc.py::test_add - assert -1 == 5")
    slow = github_api.add_check_run(REPO, sha, "slow", "timed_out", "took 6h")
    github_api.add_check_run(REPO, sha, "lint", "success", "clean")
    github_api.add_check_run(REPO, sha, "docs", "cancelled")
    github_api.add_check_run(REPO, sha, "types", "neutral")
    github_api.add_check_run(REPO, sha, "build", None, status="in_progress")
    github_api.add_check_run(REPO, sha, "flaky", "failure", "failed once")
    github_api.add_check_run(REPO, sha, "flaky", "success", "passed on re-run")
    github_api.add_status(REPO, sha, "ci/old", "failure", "was red")
    github_api.add_status(REPO, sha, "ci/old", "success", "now green")
    github_api.add_status(REPO, sha, "ci/new", "success", "was green")
    error = github_api.add_status(REPO, sha, "ci/new", "error", "runner lost",
                                  "https://ci.example/42")
    red = github_api.add_status(REPO, sha, "ci/red", "failure", "3 tests failed")
    github_api.add_status(REPO, sha, "ci/wait", "pending")

    found = forge.failed_checks(REPO, sha)

    html = f"{github_api.url}/{REPO}/runs"
    assert found == [
        CheckFailure("check_run", tests, "tests", "failure", "2 failed",
                     "FAILED test_calc.py::test_add - assert -1 == 5", f"{html}/{tests}", sha),
        CheckFailure("check_run", slow, "slow", "timed_out", "took 6h", "", f"{html}/{slow}", sha),
        CheckFailure("status", error, "ci/new", "error", "runner lost", "", "https://ci.example/42",
                     sha),
        CheckFailure("status", red, "ci/red", "failure", "3 tests failed", "", "", sha),
    ]


def test_checks_of_an_unknown_commit_are_an_error(
        github_api: FakeGitHub, forge: GitHubForge) -> None:
    with pytest.raises(ForgeError, match="No commit found for SHA"):
        forge.failed_checks(REPO, "cd" * 20)
    github_api.add_commit(REPO, "cd" * 20)
    assert forge.failed_checks(REPO, "cd" * 20) == []


def test_a_pull_request_follows_its_branch_in_a_linked_git_repo(
        github_api: FakeGitHub, tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    first = push_branch(tmp_path, remote, "t1", 1)
    github_api.add_repo(REPO, git_dir=remote)
    forge = github(github_api)
    number = github_api.add_pull(REPO, "cluster/t1")
    assert forge.pull(REPO, number).head_sha == first
    second = push_branch(tmp_path, remote, "t1", 2)
    assert second == remote_sha(remote, "refs/heads/cluster/t1") != first
    assert forge.pull(REPO, number).head_sha == second
    github_api.add_status(REPO, second, "ci", "failure", "red")
    assert [f.name for f in forge.failed_checks(REPO, second)] == ["ci"]
    assert forge.failed_checks(REPO, first) == []  # a real commit of the repo is known


@pytest.mark.parametrize("call", [
    lambda f: f.pull(REPO, 1), lambda f: f.open_pulls(REPO), lambda f: f.reviews(REPO, 1),
    lambda f: f.review_comments(REPO, 1), lambda f: f.pull_comments(REPO, 1),
    lambda f: f.failed_checks(REPO, "ab" * 20), lambda f: f.can_write(REPO, "alice"),
    lambda f: f.reply(REPO, 1, 5, "x"),
])
def test_errors_become_forge_errors(github_api: FakeGitHub, call: Any) -> None:
    github_api.add_repo(REPO)
    github_api.add_pull(REPO, "cluster/t1", head_sha="ab" * 20)
    wrong = "ghp_definitely_wrong_token_000000"
    with pytest.raises(ForgeAuthError, match="rejected the token") as caught:
        call(github(github_api, wrong))
    assert wrong not in str(caught.value)

    forge = github(github_api)
    forge.pull(REPO, 1)  # the repo is looked up (and cached): what follows hits the call itself
    github_api.rate_limited(times=1, reset_in=120)
    with pytest.raises(ForgeRateLimited, match="rate limit") as limited:
        call(forge)
    assert 100 <= limited.value.retry_after <= 121
    token, github_api.token = github_api.token, "ghp_rotated_away_00000000000000000"
    with pytest.raises(ForgeAuthError, match="rejected the token") as caught:
        call(forge)
    assert token not in str(caught.value)


@pytest.mark.parametrize("call", [
    lambda f: f.reviews(REPO, 7), lambda f: f.review_comments(REPO, 7),
    lambda f: f.pull_comments(REPO, 7), lambda f: f.reply(REPO, 7, 1, "x"),
    lambda f: f.reviews("octo/absent", 1),
])
def test_missing_pulls_are_not_found(forge: GitHubForge, call: Any) -> None:
    with pytest.raises(ForgeNotFound):
        call(forge)


def test_webhook_deliveries_are_signed_as_github_signs_them(github_api: FakeGitHub) -> None:
    github_api.add_repo(REPO)
    number = github_api.add_pull(REPO, "cluster/t1")
    review = github_api.add_review(REPO, number, "alice", "CHANGES_REQUESTED", "Fix it.",
                                   [{"path": "calc.py", "line": 2, "body": "here"}])
    line = github_api.review_comments(REPO, number)[0]["id"]
    reply = github_api.add_review_comment(REPO, number, "bob", "agreed", "", None,
                                          in_reply_to=line)
    comment = github_api.add_comment(REPO, number, "/cluster fix", author="alice")
    head = github_api.pulls(REPO)[0]["head"]["sha"]
    run = github_api.add_check_run(REPO, head, "tests", "failure", "1 failed", "trace")
    secret = Secret("hook-secret")

    headers, body = github_api.delivery(
        "pull_request_review", github_api.review_event(REPO, number, review), secret)

    assert headers["X-Hub-Signature-256"] == signature(secret, body)
    assert headers["X-GitHub-Event"] == "pull_request_review"
    assert headers["Content-Type"] == "application/json" and len(headers["X-GitHub-Delivery"]) == 36
    assert github_api.delivery("ping", {}, "hook-secret")[0]["X-Hub-Signature-256"] == signature(
        secret, b"{}")
    payload = json.loads(body)
    assert (payload["action"], payload["repository"]["full_name"], payload["sender"]["login"]) \
        == ("submitted", REPO, "alice")
    assert (payload["review"]["id"], payload["review"]["state"], payload["review"]["body"]) == (
        review, "changes_requested", "Fix it.")
    assert payload["review"]["commit_id"] == head and payload["review"]["submitted_at"]
    pull = payload["pull_request"]
    assert (pull["number"], pull["head"]["ref"], pull["head"]["sha"], pull["base"]["ref"]) == (
        number, "cluster/t1", head, "main")

    on_line = github_api.review_comment_event(REPO, number, reply)
    assert on_line["comment"]["in_reply_to_id"] == line
    assert (on_line["comment"]["path"], on_line["comment"]["line"]) == ("calc.py", 2)
    assert "in_reply_to_id" not in github_api.review_comment_event(REPO, number, line)["comment"]
    assert on_line["comment"]["pull_request_review_id"] != review  # a reply's own review

    on_issue = github_api.issue_comment_event(REPO, number, comment)
    assert on_issue["issue"]["number"] == number
    assert on_issue["issue"]["pull_request"]["url"].endswith(f"/pulls/{number}")
    assert (on_issue["comment"]["id"], on_issue["comment"]["body"]) == (comment, "/cluster fix")

    check = github_api.check_run_event(REPO, run)["check_run"]
    assert (check["id"], check["conclusion"], check["head_sha"]) == (run, "failure", head)
    assert check["output"] == {**check["output"], "summary": "1 failed", "text": "trace"}
    assert [(p["number"], p["head"]["ref"], p["head"]["sha"]) for p in check["pull_requests"]] \
        == [(number, "cluster/t1", head)]
