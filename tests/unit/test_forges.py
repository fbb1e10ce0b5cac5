"""Forges: LocalForge's JSON pull requests, GitHubForge through real PyGithub and the stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cluster.agent.forge import ForgeError, ForgeNotFound, is_slug, repo_slug
from cluster.agent.forge_github import GitHubForge
from cluster.agent.forge_local import LocalForge
from cluster.agent.workspace import Workspaces
from cluster.errors import ClusterError, SecretMissing
from cluster.secret import Secret
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.unit.test_workspace import make_remote, remote_sha

NO_THROTTLE: dict[str, Any] = {"seconds_between_requests": None, "seconds_between_writes": None}


def github(api: FakeGitHub, token: str = DEFAULT_TOKEN, **kwargs: Any) -> GitHubForge:
    return GitHubForge(Secret(token), base_url=api.api_url, **NO_THROTTLE, **kwargs)


def requests_to(api: FakeGitHub, method: str, suffix: str) -> int:
    return sum(1 for r in api.requests if r.method == method and r.path.endswith(suffix))


def push_branch(tmp_path: Path, remote: Path, task: str, attempt: int) -> str:
    spaces = Workspaces(tmp_path / "work")
    ws = spaces.prepare(str(remote), task, attempt, "main")
    (ws.path / f"a{attempt}").write_text("x\n")
    spaces.commit(ws, f"attempt {attempt}")
    head = spaces.push(ws)
    spaces.remove(ws)
    return head


def test_slugs() -> None:
    assert is_slug("octo/hello-world") and is_slug("o.k/r_2")
    for other in ("/srv/x.git", "./a/b", "https://h/o/r", "git@h:o/r.git", "o/r.git", "a/b/c"):
        assert not is_slug(other), other
    assert repo_slug("/srv/git/hello.git").startswith("hello-")
    assert repo_slug("/a/hello.git") != repo_slug("/b/hello.git")


def test_local_forge_records_one_pull_request_per_branch(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    forge = LocalForge(tmp_path / "prs")
    one = push_branch(tmp_path, remote, "t1", 1)
    url = forge.open_or_update_pr(str(remote), "cluster/t1", "main", "Fix add", "first body")
    record_path = Path(urlsplit(url).path)
    assert url.startswith("file://") and record_path == forge.record_path(str(remote), "cluster/t1")
    first = json.loads(record_path.read_text())
    assert (first["head"], first["base"], first["body"]) == (one, "main", "first body")
    two = push_branch(tmp_path, remote, "t1", 2)
    assert forge.open_or_update_pr(str(remote), "cluster/t1", "main", "Fix add", "second") == url
    second = json.loads(record_path.read_text())
    assert (second["head"], second["body"]) == (two, "second")
    assert second["created"] == first["created"] and second["updated"] >= first["updated"]
    assert [p.name for p in record_path.parent.iterdir()] == ["t1.json"]
    assert two == remote_sha(remote, "refs/heads/cluster/t1")


def test_local_forge_refuses_unpushed_branches_and_unknown_slugs(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    forge = LocalForge(tmp_path / "prs", repos_root=tmp_path)
    with pytest.raises(ForgeError, match="branch cluster/nope is not on the remote"):
        forge.open_or_update_pr(str(remote), "cluster/nope", "main", "t", "b")
    with pytest.raises(ForgeNotFound, match="no such repo"):
        forge.clone_url("octo/missing")
    (tmp_path / "octo").mkdir()
    make_remote(tmp_path / "octo", "hello")
    assert forge.clone_url("octo/hello-seed") == str(tmp_path / "octo" / "hello-seed")
    assert forge.clone_url("octo/hello") == str(tmp_path / "octo" / "hello.git")
    with pytest.raises(ForgeNotFound, match="needs a forge"):
        LocalForge(tmp_path / "prs").clone_url("octo/hello")
    with pytest.raises(ForgeError, match="issue #3"):
        forge.issue_text(str(remote), 3)
    forge.comment(str(remote), 1, "hello")
    comments = tmp_path / "prs" / repo_slug(str(remote)) / "comments" / "1.jsonl"
    assert json.loads(comments.read_text())["body"] == "hello"


def test_github_pull_request_is_created_once_then_updated(github_api: FakeGitHub) -> None:
    github_api.add_repo("octo/hello")
    forge = github(github_api)
    url = forge.open_or_update_pr("octo/hello", "cluster/t1", "main", "Fix add", "body one")
    again = forge.open_or_update_pr("octo/hello", "cluster/t1", "main", "Fix add", "body two")
    assert url == again and url.endswith("/octo/hello/pull/1")
    assert requests_to(github_api, "POST", "/pulls") == 1
    assert requests_to(github_api, "PATCH", "/pulls/1") == 1
    pulls = github_api.pulls("octo/hello")
    assert len(pulls) == 1 and pulls[0]["body"] == "body two"
    assert pulls[0]["head"]["ref"] == "cluster/t1" and pulls[0]["base"]["ref"] == "main"
    assert forge.clone_url("octo/hello") == f"{github_api.url}/octo/hello.git"
    assert forge.clone_url("/srv/x.git") == "/srv/x.git"


def test_github_reuses_a_pull_request_opened_elsewhere(github_api: FakeGitHub) -> None:
    github_api.add_repo("octo/hello")
    first = github(github_api).open_or_update_pr("octo/hello", "cluster/t1", "main", "T", "a")
    second = github(github_api).open_or_update_pr("octo/hello", "cluster/t1", "main", "T", "b")
    assert first == second and len(github_api.pulls("octo/hello")) == 1


def test_github_issue_text_has_title_body_and_comments(github_api: FakeGitHub) -> None:
    github_api.add_repo("octo/hello")
    number = github_api.add_issue("octo/hello", "add() subtracts", "2 + 3 gives -1.")
    github_api.add_comment("octo/hello", number, "Also check negatives.", author="alice")
    github_api.add_comment("octo/hello", number, "See calc.py line 2.", author="bob")
    text = github(github_api).issue_text("octo/hello", number)
    assert text.startswith(f"Issue #{number}: add() subtracts\n\n2 + 3 gives -1.")
    assert text.index("alice wrote:\nAlso check negatives.") < text.index("bob wrote:")
    forge = github(github_api)
    forge.comment("octo/hello", number, "Opened a pull request.")
    assert github_api.comments("octo/hello", number)[-1]["body"] == "Opened a pull request."


def test_github_errors_are_translated_and_never_show_the_token(github_api: FakeGitHub) -> None:
    github_api.add_repo("octo/hello")
    wrong = "ghp_definitely_wrong_token_000000"
    with pytest.raises(ClusterError, match="rejected the token") as caught:
        github(github_api, wrong).issue_text("octo/hello", 1)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)
    with pytest.raises(ForgeNotFound, match="octo/absent"):
        github(github_api).open_or_update_pr("octo/absent", "cluster/t1", "main", "T", "b")
    with pytest.raises(ForgeNotFound, match=r"octo/hello#99"):
        github(github_api).issue_text("octo/hello", 99)
    with pytest.raises(ForgeError, match="owner/name"):
        github(github_api).issue_text("/srv/x.git", 1)


def test_missing_token_is_secret_missing_at_construction(tmp_path: Path) -> None:
    with pytest.raises(SecretMissing, match="GITHUB_TOKEN"):
        GitHubForge(environ={})
    with pytest.raises(SecretMissing, match="cannot be read"):
        GitHubForge(token_file=tmp_path / "absent", environ={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretMissing, match="is empty"):
        GitHubForge(token_file=tmp_path / "empty")
    (tmp_path / "token").write_text(DEFAULT_TOKEN + "\n")
    forge = GitHubForge(token_file=tmp_path / "token", environ={}, **NO_THROTTLE)
    assert forge.token == Secret(DEFAULT_TOKEN) and str(forge.token) == "***"
    from_env = GitHubForge(environ={"GITHUB_TOKEN": DEFAULT_TOKEN}, **NO_THROTTLE)
    assert from_env.token == Secret(DEFAULT_TOKEN)
