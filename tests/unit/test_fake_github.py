"""The fake GitHub API answers the real PyGithub as GitHub does."""

from __future__ import annotations

import github
import pytest
from github import Auth, Github

from tests.fakes.github_api import FakeGitHub


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
