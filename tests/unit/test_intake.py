"""Issue intake through the GitHub stand-in and real PyGithub, into a real state repo."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cluster.cli.intake import register
from cluster.intake.filing import file_issues, file_planned
from cluster.intake.issues import IssueFeed
from cluster.intake.poller import poll_once
from cluster.intake.taskdoc import Known, Planned, Policy, task_id
from cluster.secret import Secret
from cluster.state.client import Held, StateClient
from cluster.state.init import init_state_repo
from cluster.state.records import Result
from cluster.state.snapshot import Snapshot
from tests.clients import state_client
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.helpers import ROOT, git

REPO = "acme/web"


@pytest.fixture
def state(tmp_path: Path) -> str:
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=b"specialties: [ml]\n", hooks=ROOT / "hooks")
    return f"file://{repo}"  # through receive-pack: the hooks judge intake's commits too


@pytest.fixture
def client(state: str, tmp_path: Path) -> Iterator[StateClient]:
    made = state_client(state, tmp_path, "intake")
    yield made
    made.close()


@pytest.fixture
def feed(github_api: FakeGitHub) -> Iterator[IssueFeed]:
    github_api.add_repo(REPO)
    made = IssueFeed(Secret(DEFAULT_TOKEN), base_url=github_api.api_url,
                     seconds_between_requests=None, seconds_between_writes=None)
    yield made
    made.close()


def task_on_main(client: StateClient, tid: str) -> dict[str, object]:
    snap = client.snapshot()
    view = snap.tasks[tid]
    loaded = yaml.safe_load(client.remote.store.blob(view.blob))
    assert isinstance(loaded, dict)
    return loaded


def test_task_ids_are_safe_and_bounded() -> None:
    assert task_id("acme/web", 12) == "gh-web-12"
    assert task_id("Acme/My.Web_App", 3) == "gh-my-web_app-3"
    assert task_id("acme/...", 4) == "gh-4"
    long = task_id("acme/" + "x" * 100, 123456)
    assert len(long) == 64 and long.endswith("-123456")


def test_labelled_issues_become_tasks_once(
        github_api: FakeGitHub, feed: IssueFeed, client: StateClient) -> None:
    first = github_api.add_issue(REPO, "Login redirect loops", labels=("cluster",))
    github_api.add_issue(REPO, "Not for agents", labels=("question",))
    second = github_api.add_issue(REPO, "Flaky test", labels=("cluster", "testing"))
    closed = github_api.add_issue(REPO, "Already fixed", labels=("cluster",))
    github_api.close_issue(REPO, closed)
    policy = Policy("cluster", specialty="backend")
    filed = poll_once(feed, client, REPO, policy)
    assert sorted(filed.created) == [f"gh-web-{first}", f"gh-web-{second}"]
    doc = task_on_main(client, f"gh-web-{first}")
    assert doc["issue"] == first and doc["repo"] == REPO
    assert doc["prompt"] == f"{github_api.url}/{REPO}/issues/{first}"
    assert doc["specialty"] == "backend" and doc["executor"] == {"kind": "claude"}
    assert doc["title"] == "Login redirect loops"
    main = client.snapshot().main
    again = poll_once(feed, client, REPO, policy)
    assert again.created == [] and sorted(again.existing) == sorted(filed.created)
    assert client.snapshot().main == main  # nothing committed the second time


def test_one_submit_commit_per_pass(
        github_api: FakeGitHub, feed: IssueFeed, client: StateClient) -> None:
    for n in range(3):
        github_api.add_issue(REPO, f"issue {n}", labels=("cluster",))
    before = client.snapshot().main
    filed = poll_once(feed, client, REPO, Policy("cluster", specialty="backend"))
    assert len(filed.created) == 3
    commit = client.remote.store.commit(client.snapshot().main or "")
    assert commit.parents == (before,)


def test_claimed_or_archived_issues_are_not_filed_again(
        github_api: FakeGitHub, feed: IssueFeed, client: StateClient, state: str,
        tmp_path: Path) -> None:
    number = github_api.add_issue(REPO, "Do it", labels=("cluster",))
    policy = Policy("cluster", specialty="backend")
    [tid] = poll_once(feed, client, REPO, policy).created
    agent = state_client(state, tmp_path, "agent-a", work="agent")
    snap = agent.snapshot()
    held = agent.claim(snap, snap.tasks[tid], 30)
    assert isinstance(held, Held)
    assert poll_once(feed, client, REPO, policy).existing == [tid]
    assert agent.finish(held, Result(task=tid, status="succeeded", attempt=1, agent="agent-a"))
    assert agent.fold(agent.snapshot(), 10) == 1
    assert tid not in client.snapshot().tasks
    filed = poll_once(feed, client, REPO, policy)
    assert filed.created == [] and filed.existing == [tid]
    assert number == int(tid.rsplit("-", 1)[1])
    agent.close()


def test_specialty_from_labels(
        github_api: FakeGitHub, feed: IssueFeed, client: StateClient) -> None:
    ml = github_api.add_issue(REPO, "Train it", labels=("cluster", "specialty:ml"))
    bad = github_api.add_issue(REPO, "Paint it", labels=("cluster", "specialty:painting"))
    bare = github_api.add_issue(REPO, "Who knows", labels=("cluster",))
    filed = poll_once(feed, client, REPO, Policy("cluster", specialty_from_label=True))
    assert filed.created == [f"gh-web-{ml}"]
    assert task_on_main(client, f"gh-web-{ml}")["specialty"] == "ml"
    assert any(f"#{bad}" in line and "unknown specialty 'painting'" in line
               for line in filed.skipped)
    assert any(f"#{bare}" in line and "no 'specialty:<x>' label" in line
               for line in filed.skipped)
    fallback = poll_once(feed, client, REPO,
                         Policy("cluster", specialty="docs", specialty_from_label=True))
    assert sorted(fallback.created) == [f"gh-web-{bare}"]


def test_pull_requests_with_the_label_are_not_tasks(
        github_api: FakeGitHub, feed: IssueFeed) -> None:
    github_api.add_issue(REPO, "a real issue", labels=("cluster",))
    assert [i.title for i in feed.labelled(REPO, "cluster")] == ["a real issue"]


def test_racing_filers_make_one_task(
        github_api: FakeGitHub, feed: IssueFeed, client: StateClient, state: str,
        tmp_path: Path) -> None:
    github_api.add_issue(REPO, "once", labels=("cluster",))
    issues = feed.labelled(REPO, "cluster")
    other = state_client(state, tmp_path, "intake", work="other")
    policy = Policy("cluster", specialty="backend")
    stale = other.snapshot()  # the other filer looked before this one filed
    assert file_issues(client, issues, policy).created == ["gh-web-1"]
    assert not stale.known("gh-web-1")
    assert file_issues(other, issues, policy).existing == ["gh-web-1"]
    other.close()


def test_filing_plans_again_when_main_moves_under_it(
        client: StateClient, state: str, tmp_path: Path) -> None:
    """What a plan writes may depend on main (a follow-up's round and the task it continues):
    when another writer lands on main between the plan and its commit, it is planned again on
    the new main, not rebased blindly onto it."""
    seen: list[str | None] = []

    def planner(snap: Snapshot) -> list[Planned | Known | str]:
        seen.append(snap.main)
        if len(seen) == 1:  # another intake files first, after this one has looked
            with state_client(state, tmp_path, "intake", work="other") as other:
                file_planned(other, lambda _: [_planned("theirs", [])])
        first = "theirs" if snap.known("theirs") else None
        return [_planned("mine", [first] if first else [])]

    filed = file_planned(client, planner)
    assert filed.created == ["mine"] and len(seen) == 2 and seen[0] != seen[1], seen
    assert task_on_main(client, "mine")["depends_on"] == ["theirs"]  # planned on the new main


def _planned(tid: str, depends_on: list[str]) -> Planned:
    doc = {"id": tid, "title": tid, "specialty": "backend", "repo": "acme/web",
           "depends_on": depends_on}
    return Planned(tid, yaml.safe_dump(doc).encode())


def test_cli_once(github_api: FakeGitHub, feed: IssueFeed, state: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    github_api.add_issue(REPO, "from the command line", labels=("cluster",))
    token = tmp_path / "token"
    token.write_text(DEFAULT_TOKEN + "\n")
    monkeypatch.setenv("CLUSTER_WORKDIR", str(tmp_path / "cli"))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["intake", "--state", state, "--repo", REPO, "--label", "cluster",
                              "--specialty", "backend", "--github-base-url",
                              github_api.api_url, "--token-file", str(token), "--once"])
    assert args.func(args) == 0
    assert "created 1: gh-web-1" in capsys.readouterr().out
    clone = tmp_path / "clone"
    git(["clone", "--quiet", state, str(clone)], ROOT)
    assert (clone / "tasks" / "gh-web-1.yaml").exists()
