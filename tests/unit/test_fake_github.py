"""The fake GitHub API answers the real PyGithub as GitHub does."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import github
import pytest
from github import Auth, Github

from tests.fakes.git_http import basic_auth, cgi_split
from tests.fakes.github_api import FakeGitHub
from tests.helpers import git


def client(api: FakeGitHub, token: str | None = None, base_url: str | None = None) -> Github:
    # PyGithub spaces requests (0.25 s) and writes (1 s) for GitHub's sake; not needed here.
    return Github(
        base_url=base_url or api.api_url,
        auth=Auth.Token(token or api.token),
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def test_user_and_repo(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets", default_branch="trunk")
    gh = client(github_api)

    assert gh.get_user().login == "cluster-bot"
    repo = gh.get_repo("acme/widgets")
    assert (repo.full_name, repo.default_branch, repo.owner.login) == (
        "acme/widgets",
        "trunk",
        "acme",
    )
    assert github_api.requests[-1].headers["authorization"] == f"token {github_api.token}"


def test_base_url_without_api_prefix_works_too(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    assert client(github_api, base_url=github_api.url).get_repo("acme/widgets").name == "widgets"


def test_bad_token_and_unknown_repo(github_api: FakeGitHub) -> None:
    with pytest.raises(github.BadCredentialsException):
        client(github_api, token="ghp_wrong").get_user().login  # noqa: B018
    with pytest.raises(github.UnknownObjectException):
        client(github_api).get_repo("acme/nothing")


def test_issue_and_paginated_comments(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    number = github_api.add_issue("acme/widgets", "Crash on start", "Stack trace...")
    for index in range(35):
        github_api.add_comment("acme/widgets", number, f"comment {index}")

    issue = client(github_api).get_repo("acme/widgets").get_issue(number)

    assert (issue.title, issue.body, issue.state) == ("Crash on start", "Stack trace...", "open")
    bodies = [c.body for c in issue.get_comments()]
    assert bodies == [f"comment {i}" for i in range(35)]
    assert any(r.query.get("page") == ["2"] for r in github_api.requests)


def test_pull_request_lifecycle(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    issue_number = github_api.add_issue("acme/widgets", "Task")
    repo = client(github_api).get_repo("acme/widgets")

    pull = repo.create_pull(title="Fix crash", body="Closes #1", head="task-1", base="main")

    assert pull.number == issue_number + 1  # issues and pulls share numbers
    assert (pull.head.ref, pull.head.label, pull.base.ref) == ("task-1", "acme:task-1", "main")
    assert pull.html_url.endswith(f"/acme/widgets/pull/{pull.number}")
    found = list(repo.get_pulls(state="open", head="acme:task-1"))
    assert [p.number for p in found] == [pull.number]
    assert list(repo.get_pulls(state="open", head="acme:other")) == []

    with pytest.raises(github.GithubException) as caught:
        repo.create_pull(title="Again", body="", head="task-1", base="main")
    assert caught.value.status == 422
    assert "already exists" in caught.value.data["errors"][0]["message"]

    pull.edit(title="Fix crash (retry 2)", body="updated")
    pull.create_issue_comment("Attempt 2 finished.")
    assert repo.get_pull(pull.number).title == "Fix crash (retry 2)"
    assert [c["body"] for c in github_api.comments("acme/widgets", pull.number)] == [
        "Attempt 2 finished."
    ]
    pull.edit(state="closed")
    assert list(repo.get_pulls(state="open")) == []
    assert [p.state for p in repo.get_pulls(state="all")] == ["closed"]


def test_comment_on_issue(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    number = github_api.add_issue("acme/widgets", "Task")
    issue = client(github_api).get_repo("acme/widgets").get_issue(number)
    comment = issue.create_comment("Picked up by agent-3.")
    assert comment.user.login == "cluster-bot"
    assert [c.body for c in issue.get_comments()] == ["Picked up by agent-3."]


def test_review_conversation_endpoints(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    number = github_api.add_pull("acme/widgets", "task-1", author="cluster-bot")
    review = github_api.add_review("acme/widgets", number, "alice", "CHANGES_REQUESTED", "No.",
                                   [{"path": "a.py", "line": 4, "body": "why?"}])
    lone = github_api.add_review_comment("acme/widgets", number, "bob", "typo", "b.py", 1)
    github_api.add_comment("acme/widgets", number, "conversation", author="carol")
    repo = client(github_api).get_repo("acme/widgets")
    pull = repo.get_pull(number)

    assert pull.get_review(review).state == "CHANGES_REQUESTED"
    assert [c.body for c in pull.get_single_review_comments(review)] == ["why?"]
    first = pull.get_review_comment(lone)
    assert (first.path, first.line, first.side) == ("b.py", 1, "RIGHT")
    assert "in_reply_to_id" not in first.raw_data  # GitHub sends it on replies only
    assert first.pull_request_url.endswith(f"/pulls/{number}")
    assert first.html_url.endswith(f"/pull/{number}#discussion_r{lone}")
    reply = pull.create_review_comment_reply(lone, "fixed")
    assert (reply.in_reply_to_id, reply.path, reply.user.login) == (lone, "b.py", "cluster-bot")
    with pytest.raises(github.UnknownObjectException):
        pull.create_review_comment_reply(999_999, "into the void")
    with pytest.raises(github.GithubException) as caught:
        pull.create_review_comment_reply(lone, " ")
    assert caught.value.status == 422
    # A lone comment and a reply each make a COMMENTED review, as on GitHub.
    assert [(r.user.login, r.state) for r in pull.get_reviews()] == [
        ("alice", "CHANGES_REQUESTED"), ("bob", "COMMENTED"), ("cluster-bot", "COMMENTED")]
    assert [c.body for c in repo.get_pulls_comments()] == ["why?", "typo", "fixed"]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert list(repo.get_pulls_comments(since=later)) == []
    comment = next(iter(repo.get_issues_comments()))
    assert comment.body == "conversation"
    assert pull.get_issue_comment(comment.id).user.login == "carol"


def test_checks_statuses_and_permissions(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    number = github_api.add_pull("acme/widgets", "task-1", head_sha="ab" * 20)
    repo = client(github_api).get_repo("acme/widgets")
    assert repo.get_pull(number).head.sha == "ab" * 20
    first = github_api.add_check_run("acme/widgets", "ab" * 20, "tests", "failure", "red", "log")
    again = github_api.add_check_run("acme/widgets", "ab" * 20, "tests", "success", "green")
    github_api.add_status("acme/widgets", "ab" * 20, "ci", "failure", "red")
    github_api.add_status("acme/widgets", "ab" * 20, "ci", "pending", "again")

    commit = repo.get_commit("ab" * 20)
    assert commit.commit.message and commit.sha == "ab" * 20  # the commit itself is served
    assert [r.id for r in commit.get_check_runs()] == [again]  # each name's latest
    assert [r.id for r in commit.get_check_runs(filter="all")] == [first, again]
    run = repo.get_check_run(first)
    assert (run.conclusion, run.output.summary, run.output.text, run.app.slug) == (
        "failure", "red", "log", "github-actions")
    assert [s.state for s in commit.get_statuses()] == ["pending", "failure"]  # newest first
    combined = commit.get_combined_status()
    assert (combined.state, [s.state for s in combined.statuses]) == ("pending", ["pending"])
    with pytest.raises(github.GithubException) as caught:
        repo.get_commit("cd" * 20).get_statuses().get_page(0)
    assert caught.value.status == 422

    github_api.set_permission("acme/widgets", "alice", "maintain")
    assert repo.get_collaborator_permission("alice") == "write"
    assert repo.get_collaborator_role_name("alice") == "maintain"
    assert repo.get_collaborator_permission("acme") == "admin"  # the owner
    with pytest.raises(github.UnknownObjectException):
        repo.get_collaborator_permission("stranger")
    with pytest.raises(ValueError, match="permission 'owner'"):
        github_api.set_permission("acme/widgets", "bob", "owner")


def test_status_and_rate_limit(github_api: FakeGitHub) -> None:
    github_api.add_repo("acme/widgets")
    github_api.add_pull("acme/widgets", "task-1", head_sha="ab" * 20)
    status = github_api.add_status("acme/widgets", "ab" * 20, "ci", "error", "lost", "https://x/1")
    event = github_api.status_event("acme/widgets", status)
    assert (event["sha"], event["state"], event["context"], event["target_url"]) == (
        "ab" * 20, "error", "ci", "https://x/1")
    assert [b["name"] for b in event["branches"]] == ["task-1"]
    github_api.rate_limited(times=2)
    # PyGithub's default retry would wait for the reset and try again, as it does on GitHub.
    gh = Github(base_url=github_api.api_url, auth=Auth.Token(github_api.token), retry=0,
                seconds_between_requests=None, seconds_between_writes=None)
    for _ in range(2):
        with pytest.raises(github.RateLimitExceededException):
            gh.get_repo("acme/widgets")
    assert gh.get_repo("acme/widgets").name == "widgets"


def test_a_linked_repos_clone_url_serves_git_to_the_token_only(tmp_path: Path) -> None:
    """The stand-in's clone URL is real git over smart HTTP (git http-backend), as a forge's:
    the token as a Basic password clones and pushes; no token or a wrong one is refused."""
    src = tmp_path / "src"
    git(["init", "-q", "-b", "main", str(src)], tmp_path)
    (src / "a.txt").write_text("a\n")
    git(["add", "a.txt"], src)
    git(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"], src)
    remote = tmp_path / "calc.git"
    git(["clone", "-q", "--bare", str(src), str(remote)], tmp_path)
    with FakeGitHub() as api:
        api.add_repo("acme/calc", git_dir=remote)
        url = Github(auth=Auth.Token(api.token), base_url=api.api_url).get_repo(
            "acme/calc").clone_url
        header = f"http.extraHeader=Authorization: {basic_auth(api.token)}"
        work = tmp_path / "work"
        git(["-c", header, "clone", "-q", url, str(work)], tmp_path)
        (work / "b.txt").write_text("b\n")
        git(["add", "b.txt"], work)
        git(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b"], work)
        git(["-c", header, "push", "-q", "origin", "HEAD:refs/heads/cluster/x"], work)
        assert git(["rev-parse", "refs/heads/cluster/x"], remote).strip() \
            == git(["rev-parse", "HEAD"], work).strip()
        for auth in ([], ["-c", f"http.extraHeader=Authorization: {basic_auth('ghp_wrong')}"]):
            done = subprocess.run(["git", *auth, "ls-remote", url], capture_output=True,
                                  text=True, timeout=60, check=False,
                                  env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
            assert done.returncode != 0, done
            # No token: git asks for one (it may not); a wrong one: the server refused it.
            said = ("could not read Username", "Authentication failed")
            assert any(text in done.stderr for text in said), done


def test_the_git_backends_binary_answer_is_passed_on_byte_for_byte() -> None:
    """A pack may hold CRLF bytes: only the CGI header block is split off and read (turning
    the first CRLFs of the whole answer into LFs corrupted packs: "bad line length")."""
    body = b"0008NAK\n\x01PACK\r\n\r\n\x00\r\nend\n\n"
    head, payload = cgi_split(b"Status: 200 OK\r\nContent-Type: x\r\n\r\n" + body)
    assert (head, payload) == (b"Status: 200 OK\r\nContent-Type: x", body)
    assert cgi_split(b"Content-Type: x\n\n" + body) == (b"Content-Type: x", body)
