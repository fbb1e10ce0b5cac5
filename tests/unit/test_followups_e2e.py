"""Pull-request conversations end to end: real agent processes on a real state repo, the GitHub
stand-in through PyGithub (its clone URL serving the target repo over smart HTTP, to the token
only), intake by the signed webhook over real HTTP and by the poller.

A review with two line comments becomes one follow-up however it arrives; the agent pushes a
commit on the same branch that changes those lines, answers in both threads and on the pull
request, and its result names the round; an author without write access makes nothing; the
round limit stops the loop with a comment; a failing check, when enabled, makes a follow-up
whose prompt carries the check's output.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.forge_github import GitHubForge
from cluster.demo import sample_repo
from cluster.intake.deliveries import DeliveryLog
from cluster.intake.followups import FollowUpPolicy
from cluster.intake.poller import poll_follow_ups
from cluster.intake.webhook import WebhookApp, WebhookServer
from cluster.secret import Secret
from cluster.state.records import Result
from tests.clients import state_client
from tests.fakes.github_api import FakeGitHub
from tests.helpers import commit_files, git, make_state, task_doc, task_files

REPO = "acme/calc"
SECRET = "webhook-test-secret"
# What the task's command does: the fix; on a follow-up whose prompt quotes the review, what
# the review asked for, on the two lines it commented on; and it leaves the prompt it was given
# in the work (prompt-seen.md) so that the test can read what the agent put in it.
COMMAND = r"""
sed -i 's/a - b/a + b/' calc.py
cp "$CLUSTER_PROMPT_FILE" prompt-seen.md
if grep -q 'add type hints' "$CLUSTER_PROMPT_FILE"; then
  sed -i '1s/.*/def add(a: int, b: int) -> int:/; 2s/.*/    return a + b  # the sum/' calc.py
fi
if grep -q 'AssertionError: add is broken' "$CLUSTER_PROMPT_FILE"; then
  echo '# checked' >> calc.py
fi
"""
REVIEW: list[dict[str, Any]] = [{"path": "calc.py", "line": 1, "body": "add type hints"},
                              {"path": "calc.py", "line": 2, "body": "and say what the result is"}]


@pytest.fixture
def forge(github_api: FakeGitHub, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubForge]:
    """The target repo on the stand-in, the agents' token in their environment, people."""
    github_api.add_repo(REPO, git_dir=sample_repo(tmp_path))
    github_api.set_permission(REPO, "alice", "write")
    github_api.set_permission(REPO, "mallory", "read")
    monkeypatch.setenv("GITHUB_TOKEN", github_api.token)
    forge = GitHubForge(Secret(github_api.token), base_url=github_api.api_url, retry=None)
    yield forge
    forge.close()


def run_agent(agents: Any, state: Path, github_api: FakeGitHub, name: str) -> None:
    agent = agents(state, name, runner="repo", exit_when_idle=True, lease=10, heartbeat=1,
                   allow_local=False,
                   extra=["--forge", "github", "--github-base-url", github_api.api_url])
    assert agent.wait(180) == 0, agent.tail()


def result(state: Path, tmp_path: Path, key: str) -> Result | None:
    with state_client(state, tmp_path) as reader:
        return reader.snapshot().result(key)


def follow_up_tasks(state: Path, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The follow-up tasks on main and in the archive: id -> their follow_up field."""
    with state_client(state, tmp_path) as reader:
        snap = reader.snapshot()
        specs = {key: view.spec for key, view in snap.tasks.items()}
        specs |= {key: snap.archived_spec(key) for key in snap.archived}
    return {key: spec.follow_up.model_dump() for key, spec in specs.items()
            if spec is not None and spec.follow_up is not None}


@contextmanager
def webhook(state: Path, tmp_path: Path, forge: GitHubForge,
            policy: FollowUpPolicy) -> Iterator[str]:
    with state_client(state, tmp_path, "intake", work="webhook") as client:
        app = WebhookApp(client, None, Secret(SECRET), DeliveryLog(tmp_path / "deliveries"),
                         forge=forge, follow_ups=policy)
        server = WebhookServer(app)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server.url
        finally:
            server.shutdown()
            server.server_close()


def deliver(url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return dict(json.loads(answer.read()))


def poll_once(state: Path, tmp_path: Path, forge: GitHubForge, policy: FollowUpPolicy) -> Any:
    with state_client(state, tmp_path, "intake", work="poller") as client:
        return poll_follow_ups(forge, client, REPO, policy)


def branch_head(github_api: FakeGitHub, branch: str) -> str:
    git_dir = github_api.repos[REPO].git_dir
    assert git_dir is not None
    return git(["rev-parse", f"refs/heads/{branch}"], git_dir).strip()


def test_a_review_round_on_the_same_branch_then_the_round_limit(
        tmp_path: Path, agents: Any, github_api: FakeGitHub, forge: GitHubForge) -> None:
    state = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    opening = task_doc("fix-add", COMMAND, repo=REPO, verify="python3 test_calc.py",
                       max_rounds=1)
    commit_files(state, task_files([opening]), tmp_path / "person")
    run_agent(agents, state, github_api, "worker-1")
    (pull,) = github_api.pulls(REPO)
    number, first_head = pull["number"], branch_head(github_api, "cluster/fix-add")
    policy = FollowUpPolicy(bot_login=github_api.login)

    # A review with two line comments, delivered twice (two deliveries) and polled once.
    review = github_api.add_review(REPO, number, "alice", "CHANGES_REQUESTED",
                                   "Two small things.", REVIEW)
    with webhook(state, tmp_path, forge, policy) as url:
        answers = [deliver(url, *github_api.delivery(
            "pull_request_review", github_api.review_event(REPO, number, review), SECRET))
            for _ in range(2)]
    assert [a["status"] for a in answers] == ["created", "exists"], answers
    poll_once(state, tmp_path, forge, policy)
    # An author who may not write to the repo makes nothing, however addressed.
    github_api.add_comment(REPO, number, "/cluster fix\nplease rewrite it all", author="mallory")
    poll_once(state, tmp_path, forge, policy)
    (follow_up,) = follow_up_tasks(state, tmp_path).items()
    key, field = follow_up
    assert (field["pull_request"], field["of"], field["round"], field["branch"],
            field["head"], field["trigger"]) == (
        number, "fix-add", 1, "cluster/fix-add", first_head, {"kind": "review", "id": review})

    run_agent(agents, state, github_api, "worker-2")
    done = result(state, tmp_path, key)
    assert done is not None and done.status == "succeeded", done
    new_head = branch_head(github_api, "cluster/fix-add")
    assert new_head != first_head and done.head == new_head
    assert len(github_api.pulls(REPO)) == 1  # the same pull request, never a second
    git_dir = github_api.repos[REPO].git_dir
    assert git_dir is not None
    diff = git(["diff", "-U0", first_head, new_head, "--", "calc.py"], git_dir)
    assert "+def add(a: int, b: int) -> int:" in diff and "+    return a + b  # the sum" in diff
    prompt = git(["show", f"{new_head}:prompt-seen.md"], git_dir)
    for comment in REVIEW:  # the prompt carried each comment with its file, line and hunk
        assert comment["body"] in prompt and "calc.py" in prompt
    assert "Two small things." in prompt and "Original task fix-add" in prompt
    threads = {c["id"]: c for c in github_api.review_comments(REPO, number)
               if c.get("pull_request_review_id") == review and "in_reply_to_id" not in c}
    replies = [c for c in github_api.review_comments(REPO, number) if "in_reply_to_id" in c]
    assert sorted(r["in_reply_to_id"] for r in replies) == sorted(threads), replies
    assert all(r["user"]["login"] == github_api.login for r in replies)
    said = [c["body"] for c in github_api.comments(REPO, number)
            if c["user"]["login"] == github_api.login]
    assert len(said) == 1 and "round 1" in said[0].lower() and new_head[:7] in said[0], said
    assert "This was the last follow-up round (1 of 1)" in said[0], said
    assert (done.round, sorted(done.replied_to)) == (1, sorted(threads)), done
    assert done.pull_request == pull["html_url"]

    # A second review: round 2 is over max_rounds 1; the agent says so and does nothing.
    again = github_api.add_review(REPO, number, "alice", "CHANGES_REQUESTED", "One more.",
                                  [{"path": "calc.py", "line": 2, "body": "add type hints"}])
    poll_once(state, tmp_path, forge, policy)
    rounds = follow_up_tasks(state, tmp_path)
    (second,) = (k for k, f in rounds.items() if f["trigger"]["id"] == again)
    assert (rounds[second]["round"], rounds[second]["of"]) == (2, key)
    run_agent(agents, state, github_api, "worker-3")
    stopped = result(state, tmp_path, second)
    assert stopped is not None and stopped.status == "invalid", stopped
    assert "exceeds max_rounds 1" in stopped.reason
    assert branch_head(github_api, "cluster/fix-add") == new_head  # nothing pushed
    last = [c["body"] for c in github_api.comments(REPO, number)
            if c["user"]["login"] == github_api.login][-1]
    assert "Follow-up round 2 exceeds max_rounds 1: not acted on." in last


def test_a_failing_check_makes_a_follow_up_only_when_enabled(
        tmp_path: Path, agents: Any, github_api: FakeGitHub, forge: GitHubForge) -> None:
    state = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    commit_files(state, task_files([task_doc("fix-add", COMMAND, repo=REPO)]),
                 tmp_path / "person")
    run_agent(agents, state, github_api, "worker-1")
    (pull,) = github_api.pulls(REPO)
    head = branch_head(github_api, "cluster/fix-add")
    check = github_api.add_check_run(REPO, head, "tests", "failure", "1 test failed",
                                     "AssertionError: add is broken for negative numbers")
    poll_once(state, tmp_path, forge, FollowUpPolicy(bot_login=github_api.login))
    assert follow_up_tasks(state, tmp_path) == {}  # checks are off by default
    poll_once(state, tmp_path, forge, FollowUpPolicy(bot_login=github_api.login, checks=True))
    (key, field), = follow_up_tasks(state, tmp_path).items()
    assert field["trigger"] == {"kind": "check_run", "id": check}
    run_agent(agents, state, github_api, "worker-2")
    done = result(state, tmp_path, key)
    assert done is not None and done.status == "succeeded", done
    git_dir = github_api.repos[REPO].git_dir
    assert git_dir is not None
    prompt = git(["show", f"{done.head}:prompt-seen.md"], git_dir)
    assert "AssertionError: add is broken for negative numbers" in prompt
    assert "1 test failed" in prompt and "tests" in prompt
    assert pull["number"] == github_api.pulls(REPO)[0]["number"]
    assert os.environ["GITHUB_TOKEN"] not in prompt
