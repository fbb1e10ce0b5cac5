"""Follow-up intake: reviews, comments and failed checks on the agents' pull requests become
follow-up tasks, polled through real PyGithub against the GitHub stand-in into a real state
repo (its hooks judging every commit)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cluster.agent.pulls import MARKER, Pull, Trigger
from cluster.cli.intake import register
from cluster.errors import ConfigError
from cluster.intake.followups import (
    FollowUpPolicy,
    command_in,
    follow_up_id,
    plan_follow_up,
    pull_prefix,
)
from cluster.intake.issues import IssueFeed
from cluster.intake.poller import poll_follow_ups
from cluster.intake.taskdoc import Known, Planned
from cluster.secret import Secret
from cluster.state.client import Held, StateClient
from cluster.state.ids import is_safe_id
from cluster.state.init import init_state_repo
from cluster.state.records import Result
from cluster.state.schema import TRIGGER_KINDS, TriggerKind, parse_task
from tests.clients import state_client
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.helpers import ROOT, commit_files, task_doc, task_files

REPO = "acme/web"
OPENER = "fix-login"
HEAD = "a" * 40
WRITER, READER = "maintainer", "drive-by"
POLICY = FollowUpPolicy(bot_login="cluster-bot")


@pytest.fixture
def state(tmp_path: Path) -> str:
    repo = tmp_path / "state.git"
    init_state_repo(repo, settings=b"specialties: [ml]\n", hooks=ROOT / "hooks")
    opening = task_doc(OPENER, title="Fix the login redirect", prompt="Make /login stop looping.",
                       labels=["auth"], max_rounds=5, timeout=600)
    commit_files(repo, task_files([opening]), tmp_path / "person")
    return f"file://{repo}"


@pytest.fixture
def client(state: str, tmp_path: Path) -> Iterator[StateClient]:
    made = state_client(state, tmp_path, "intake")
    yield made
    made.close()


@pytest.fixture
def forge(github_api: FakeGitHub) -> Iterator[IssueFeed]:
    github_api.add_repo(REPO)
    github_api.set_permission(REPO, WRITER, "write")
    github_api.set_permission(REPO, READER, "read")
    made = IssueFeed(Secret(DEFAULT_TOKEN), base_url=github_api.api_url,
                     seconds_between_requests=None, seconds_between_writes=None)
    yield made
    made.close()


@pytest.fixture
def pr(github_api: FakeGitHub, forge: IssueFeed) -> int:
    return github_api.add_pull(REPO, f"cluster/{OPENER}", head_sha=HEAD)


def task_yaml(client: StateClient, tid: str) -> dict[str, Any]:
    snap = client.snapshot()
    loaded = yaml.safe_load(client.remote.store.blob(snap.tasks[tid].blob))
    assert isinstance(loaded, dict)
    return loaded


HUNK = "@@ -1,3 +1,3 @@\n-def login():\n+def login(next):"


def two_line_review(github_api: FakeGitHub, pr: int, author: str = WRITER) -> int:
    return github_api.add_review(REPO, pr, author, "CHANGES_REQUESTED", "Two things, please.", [
        {"path": "app/login.py", "line": 3, "body": "Check `next` here.", "diff_hunk": HUNK},
        {"path": "app/views.py", "line": 10, "body": "And drop this.", "diff_hunk": HUNK}])


# -- ids -------------------------------------------------------------------------------------

repos = st.from_regex(r"[A-Za-z0-9_.-]{1,39}/[A-Za-z0-9_.-]{1,100}", fullmatch=True)
ids = st.integers(min_value=1, max_value=2**53 - 1)
kinds = st.sampled_from(TRIGGER_KINDS)


@given(repos, st.integers(min_value=1, max_value=2**31), kinds, ids)
def test_follow_up_ids_are_safe_and_stable(repo: str, pr: int, kind: TriggerKind,
                                           tid: int) -> None:
    made = follow_up_id(repo, pr, kind, tid)
    assert is_safe_id(made)
    assert made.startswith(pull_prefix(repo, pr))
    assert made == follow_up_id(repo.upper(), pr, kind, tid)  # GitHub's names ignore case


@given(st.lists(st.tuples(repos, st.integers(min_value=1, max_value=10**6), kinds, ids),
                min_size=2, max_size=30, unique_by=lambda t: (t[0].lower(), *t[1:])))
def test_distinct_triggers_get_distinct_ids(triggers: list[tuple[str, int, TriggerKind,
                                                                 int]]) -> None:
    made = {follow_up_id(*t) for t in triggers}
    assert len(made) == len(triggers)


@given(st.integers(max_value=0) | st.just(True))
def test_a_trigger_id_is_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        follow_up_id(REPO, 1, "review", bad)


def test_the_command_starts_a_line_and_may_name_a_specialty() -> None:
    assert command_in("/cluster fix", "/cluster fix") == (True, None)
    assert command_in("thanks!\n  /Cluster Fix Frontend please", "/cluster fix") == (
        True, "frontend")
    assert command_in("> /cluster fix\nquoted, not asked", "/cluster fix") == (False, None)
    assert command_in("/cluster fixed it myself", "/cluster fix") == (False, None)
    assert command_in("please /cluster fix", "/cluster fix") == (False, None)


# -- polling ---------------------------------------------------------------------------------

def test_a_review_with_two_line_comments_makes_one_follow_up(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    review = two_line_review(github_api, pr)
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    tid = follow_up_id(REPO, pr, "review", review)
    assert filed.created == [tid], filed.summary()
    doc = task_yaml(client, tid)
    assert doc["follow_up"] == {"pull_request": pr, "of": OPENER, "round": 1,
                                "branch": f"cluster/{OPENER}", "head": HEAD,
                                "trigger": {"kind": "review", "id": review}}
    assert doc["depends_on"] == [OPENER]
    assert doc["prompt"] == "Original task fix-login: Fix the login redirect\n\n" \
                            "Make /login stop looping."
    assert doc["title"] == f"Round 1 on {REPO}#{pr}: review by {WRITER}"
    assert doc["specialty"] == "backend" and doc["priority"] == "high"
    assert doc["labels"] == ["auth", "follow-up"]
    assert doc["max_rounds"] == 5 and doc["timeout"] == 600
    assert doc["executor"] == {"kind": "command", "command": "true", "args": []}
    assert "Check `next` here." not in yaml.safe_dump(doc)  # the text is fetched, not copied
    main = client.snapshot().main
    again = poll_follow_ups(forge, client, REPO, POLICY)
    assert again.created == [] and again.existing == [tid]
    assert client.snapshot().main == main


def test_an_author_without_write_access_makes_nothing(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    github_api.add_review(REPO, pr, READER, "CHANGES_REQUESTED", "Do it my way.")
    github_api.add_comment(REPO, pr, "/cluster fix", author="stranger")  # no role at all
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    assert filed.created == []
    assert sum("no write access" in line for line in filed.skipped) == 2
    assert not any(key.startswith(pull_prefix(REPO, pr)) for key in client.snapshot().tasks)
    assert [c["body"] for c in github_api.comments(REPO, pr)] == ["/cluster fix"]  # not polite


def test_a_polite_refusal_is_said_once_however_often_polled(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    github_api.add_comment(REPO, pr, "/cluster fix", author=READER)
    polite = FollowUpPolicy(bot_login="cluster-bot", polite=True)
    for _ in range(3):
        assert poll_follow_ups(forge, client, REPO, polite).created == []
    answers = [c for c in github_api.comments(REPO, pr) if "write access" in c["body"]]
    assert len(answers) == 1
    assert MARKER in answers[0]["body"] and f"@{READER}" in answers[0]["body"]
    assert f"refused {pull_prefix(REPO, pr)}c" in answers[0]["body"]


def test_an_allowlisted_author_without_write_access_makes_one(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    comment = github_api.add_comment(REPO, pr, "/cluster fix", author=READER)
    allowing = FollowUpPolicy(bot_login="cluster-bot", allow=frozenset({"Drive-By"}))
    filed = poll_follow_ups(forge, client, REPO, allowing)
    assert filed.created == [follow_up_id(REPO, pr, "comment", comment)]


def test_the_agents_own_comments_never_trigger(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    github_api.set_permission(REPO, "cluster-bot", "write")
    github_api.add_comment(REPO, pr, "/cluster fix\nI pushed abc.", author="cluster-bot")
    github_api.add_comment(REPO, pr, f"{MARKER}\n/cluster fix", author=WRITER)
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    assert filed.created == []
    assert sum("the agents' own comment" in line for line in filed.skipped) == 2


def test_the_command_may_name_another_specialty(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    good = github_api.add_comment(REPO, pr, "/cluster fix frontend\nThe button is off.",
                                  author=WRITER)
    bad = github_api.add_comment(REPO, pr, "/cluster fix painting", author=WRITER)
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    tid = follow_up_id(REPO, pr, "comment", good)
    assert filed.created == [tid]
    assert task_yaml(client, tid)["specialty"] == "frontend"
    [reason] = filed.skipped
    assert f"comment {bad}" in reason and "specialty 'painting'" in reason


def test_plain_conversation_is_not_a_trigger(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    github_api.add_review(REPO, pr, WRITER, "APPROVED", "/cluster fix")
    github_api.add_review(REPO, pr, WRITER, "COMMENTED", "Looks fine to me.")
    github_api.add_comment(REPO, pr, "Nice work.", author=WRITER)
    github_api.add_review_comment(REPO, pr, WRITER, "typo here", "app/login.py", 2)
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    assert (filed.created, filed.existing, filed.skipped) == ([], [], [])


def test_a_commenting_review_or_line_comment_with_the_command_triggers(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    review = github_api.add_review(REPO, pr, WRITER, "COMMENTED", "/cluster fix", [
        {"path": "a.py", "line": 1, "body": "/cluster fix (this one is part of the review)"}])
    line = github_api.add_review_comment(REPO, pr, WRITER, "/cluster fix\nrename", "b.py", 4)
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    assert sorted(filed.created) == sorted([follow_up_id(REPO, pr, "review", review),
                                            follow_up_id(REPO, pr, "review_comment", line)])


def test_failed_checks_trigger_only_when_enabled(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    run = github_api.add_check_run(REPO, HEAD, "tests", "failure", "2 failed", "E assert 1 == 2")
    github_api.add_check_run(REPO, HEAD, "lint", "success")
    assert poll_follow_ups(forge, client, REPO, POLICY).created == []
    checking = FollowUpPolicy(bot_login="cluster-bot", checks=True)
    filed = poll_follow_ups(forge, client, REPO, checking)
    tid = follow_up_id(REPO, pr, "check_run", run)
    assert filed.created == [tid]
    doc = task_yaml(client, tid)
    assert doc["follow_up"]["trigger"] == {"kind": "check_run", "id": run}
    assert doc["follow_up"]["head"] == HEAD
    assert doc["title"] == f"Round 1 on {REPO}#{pr}: check_run failed"


def test_a_failed_status_triggers_with_checks(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    status = github_api.add_status(REPO, HEAD, "ci/build", "failure", "build broke")
    filed = poll_follow_ups(forge, client, REPO, FollowUpPolicy(checks=True))
    assert filed.created == [follow_up_id(REPO, pr, "status", status)]


def test_rounds_chain_and_wait_for_the_one_before(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int, state: str,
        tmp_path: Path) -> None:
    first = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "Round one.")
    [one] = poll_follow_ups(forge, client, REPO, POLICY).created
    assert one == follow_up_id(REPO, pr, "review", first)
    second = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "Round two.")
    [two] = poll_follow_ups(forge, client, REPO, POLICY).created
    doc = task_yaml(client, two)
    assert doc["follow_up"]["round"] == 2 and doc["follow_up"]["of"] == one
    assert doc["follow_up"]["trigger"] == {"kind": "review", "id": second}
    assert doc["depends_on"] == [OPENER, one]  # round one is not finished: round two waits
    assert doc["title"].startswith("Round 2 on ")
    with state_client(state, tmp_path, "agent-a", work="agent") as agent:
        for key in (OPENER, one, two):
            snap = agent.snapshot()
            held = agent.claim(snap, snap.tasks[key], 30)
            assert isinstance(held, Held)
            assert agent.finish(held, Result(task=key, status="succeeded", attempt=1,
                                             agent="agent-a"))
        assert agent.fold(agent.snapshot(), 10) == 3  # round two lives on in archive/ only
    github_api.add_comment(REPO, pr, "/cluster fix", author=WRITER)
    [three] = poll_follow_ups(forge, client, REPO, POLICY).created
    doc = task_yaml(client, three)
    assert doc["follow_up"]["round"] == 3 and doc["follow_up"]["of"] == two
    assert doc["depends_on"] == [OPENER]  # round two is done: nothing to wait for


def test_triggers_seen_in_one_pass_chain_in_order(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    review = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "first")
    comment = github_api.add_comment(REPO, pr, "/cluster fix\nsecond", author=WRITER)
    before = client.snapshot().main
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    one, two = follow_up_id(REPO, pr, "review", review), follow_up_id(REPO, pr, "comment",
                                                                     comment)
    assert sorted(filed.created) == sorted([one, two])
    assert client.remote.store.commit(client.snapshot().main or "").parents == (before,)
    first, second = task_yaml(client, one), task_yaml(client, two)
    assert first["follow_up"]["round"] == 1 and first["follow_up"]["of"] == OPENER
    assert second["follow_up"]["round"] == 2 and second["follow_up"]["of"] == one
    assert second["depends_on"] == [OPENER, one]


def test_only_the_agents_open_pull_requests_count(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    human = github_api.add_pull(REPO, "feature/mine")
    github_api.add_review(REPO, human, WRITER, "CHANGES_REQUESTED", "not an agent's")
    stranger = github_api.add_pull(REPO, "cluster/someone-else")
    github_api.add_review(REPO, stranger, WRITER, "CHANGES_REQUESTED", "unknown task")
    spoof = github_api.add_pull(REPO, f"cluster/{OPENER}", author="forker")  # from a fork, say
    github_api.add_review(REPO, spoof, WRITER, "CHANGES_REQUESTED", "not the agents' either")
    filed = poll_follow_ups(forge, client, REPO, POLICY)
    assert filed.created == []
    assert len(filed.skipped) == 2
    assert any("'cluster/someone-else' names no task" in line for line in filed.skipped)
    assert any(f"#{spoof}" in line and "opened by forker, not by the agents" in line
               for line in filed.skipped)


# -- planning on its own -------------------------------------------------------------------

def pull(state: Literal["open", "closed"] = "open", branch: str = f"cluster/{OPENER}") -> Pull:
    return Pull(REPO, 7, f"https://github.com/{REPO}/pull/7", branch, HEAD, "main", state,
                "cluster-bot")


def test_a_closed_pull_request_or_unknown_opener_plans_nothing(client: StateClient) -> None:
    snap = client.snapshot()
    trigger = Trigger("review", 11, 7, WRITER, "", 1.0)
    assert plan_follow_up(trigger, pull("closed"), snap, POLICY,
                          lambda *_: True) == f"{REPO}#7: review 11: the pull request is closed"
    got = plan_follow_up(trigger, pull(branch="main"), snap, POLICY, lambda *_: True)
    assert isinstance(got, str) and "not an agent's pull request" in got
    planned = plan_follow_up(trigger, pull(), snap, POLICY, lambda *_: True)
    assert isinstance(planned, Planned)
    spec = parse_task(f"tasks/{planned.id}.yaml", planned.data, snap.settings.known_specialties)
    assert spec.follow_up is not None and spec.follow_up.round == 1


def test_a_known_trigger_is_known_before_anything_else(
        github_api: FakeGitHub, forge: IssueFeed, client: StateClient, pr: int) -> None:
    review = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "x")
    [tid] = poll_follow_ups(forge, client, REPO, POLICY).created
    trigger = Trigger("review", review, pr, WRITER, "x", 1.0)
    later = Pull(REPO, pr, "", f"cluster/{OPENER}", HEAD, "main", "closed", "cluster-bot")
    assert plan_follow_up(trigger, later, client.snapshot(), POLICY,
                          lambda *_: False) == Known(tid)


# -- the command line ------------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_follow_ups_alone(github_api: FakeGitHub, forge: IssueFeed, pr: int, state: str,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    review = two_line_review(github_api, pr)
    github_api.add_comment(REPO, pr, "/cluster fix", author=READER)
    token = tmp_path / "token"
    token.write_text(DEFAULT_TOKEN + "\n")
    monkeypatch.setenv("CLUSTER_WORKDIR", str(tmp_path / "cli"))
    args = parse("intake", "--state", state, "--repo", REPO, "--follow-ups", "--polite",
                 "--allow", "someone", "--github-base-url", github_api.api_url,
                 "--token-file", str(token), "--once")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"created 1: {follow_up_id(REPO, pr, 'review', review)}" in out
    assert "no write access" in out
    assert sum("write access" in c["body"] for c in github_api.comments(REPO, pr)) == 1


def test_cli_needs_a_label_or_follow_ups(tmp_path: Path) -> None:
    args = parse("intake", "--state", str(tmp_path), "--repo", REPO, "--once")
    with pytest.raises(ConfigError, match="--label"):
        args.func(args)
    args = parse("intake", "--state", str(tmp_path), "--repo", REPO, "--follow-ups",
                 "--specialty", "backend", "--once")
    with pytest.raises(ConfigError, match="need --label"):
        args.func(args)
