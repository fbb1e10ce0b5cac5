"""The webhook receiver's follow-ups over real HTTP on 127.0.0.1: reviews, comments and check
runs on the agents' pull requests, delivered signed as GitHub delivers them by the GitHub
stand-in, read back through real PyGithub, filed on a real state repo."""

from __future__ import annotations

import copy
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.intake.deliveries import DeliveryLog
from cluster.intake.followups import FollowUpPolicy, follow_up_id
from cluster.intake.issues import IssueFeed
from cluster.intake.poller import poll_follow_ups
from cluster.intake.taskdoc import Policy
from cluster.intake.triggers import Event, PayloadError, parse_event
from cluster.intake.webhook import WebhookApp, WebhookServer, signature
from cluster.secret import Secret
from cluster.state.init import init_state_repo
from tests.clients import ClosingStateClient, state_client
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub
from tests.helpers import ROOT, commit_files, task_doc, task_files
from tests.unit.test_webhook import SECRET, issue_event, serve_command

REPO = "acme/web"
OPENER = "fix-login"
HEAD = "b" * 40
WRITER, READER = "maintainer", "drive-by"


@pytest.fixture
def state(tmp_path: Path) -> str:
    repo = tmp_path / "state.git"
    init_state_repo(repo, hooks=ROOT / "hooks")
    commit_files(repo, task_files([task_doc(OPENER, title="Fix the login redirect")]),
                 tmp_path / "person")
    return f"file://{repo}"


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


class Hook:
    """A receiver with follow-ups on (``policy``), serving on a free 127.0.0.1 port."""

    def __init__(self, state: str, tmp_path: Path, forge: IssueFeed | None,
                 policy: FollowUpPolicy | None, issues: Policy | None = None) -> None:
        self.client: ClosingStateClient = state_client(state, tmp_path, "intake", work="hook")
        app = WebhookApp(self.client, issues, SECRET, DeliveryLog(tmp_path / "seen.txt"),
                         forge=forge, follow_ups=policy)
        self.server = WebhookServer(app, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.client.close()

    def follow_ups(self) -> set[str]:
        return {key for key in self.client.snapshot().tasks if key.startswith("fu-")}


@pytest.fixture
def start(state: str, tmp_path: Path) -> Iterator[Callable[..., Hook]]:
    running: list[Hook] = []

    def make(forge: IssueFeed | None, policy: FollowUpPolicy | None = None,
             issues: Policy | None = None) -> Hook:
        hook = Hook(state, tmp_path, forge, policy or FollowUpPolicy(bot_login="cluster-bot"),
                    issues)
        running.append(hook)
        return hook

    yield make
    for hook in running:
        hook.stop()


def post(hook: Hook, delivery: tuple[dict[str, str], bytes]) -> tuple[int, dict[str, Any]]:
    headers, body = delivery
    url = f"http://127.0.0.1:{hook.server.server_address[1]}/"
    return post_to(url, headers, body)


def post_to(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_review_delivered_twice_and_polled_once_is_one_task(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook],
        state: str, tmp_path: Path) -> None:
    hook = start(forge)
    review = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "Please fix.", [
        {"path": "a.py", "line": 1, "body": "here"}, {"path": "b.py", "line": 2, "body": "too"}])
    tid = follow_up_id(REPO, pr, "review", review)
    payload = github_api.review_event(REPO, pr, review)
    first, second = (github_api.delivery("pull_request_review", payload, SECRET)
                     for _ in range(2))
    assert first[0]["X-GitHub-Delivery"] != second[0]["X-GitHub-Delivery"]
    status, body = post(hook, first)
    assert (status, body["status"], body["tasks"]) == (202, "created", [tid]), body
    status, body = post(hook, second)
    assert (status, body["status"], body["tasks"]) == (200, "exists", [tid]), body
    with state_client(state, tmp_path, "poller") as poller:
        polled = poll_follow_ups(forge, poller, REPO, FollowUpPolicy(bot_login="cluster-bot"))
    assert polled.created == [] and polled.existing == [tid]
    assert hook.follow_ups() == {tid}
    spec = hook.client.snapshot().tasks[tid].spec
    assert spec is not None and spec.follow_up is not None
    assert spec.follow_up.round == 1 and spec.depends_on == (OPENER,)


def test_comments_and_line_comments_with_the_command(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook]) -> None:
    hook = start(forge)
    comment = github_api.add_comment(REPO, pr, "/cluster fix frontend", author=WRITER)
    status, body = post(hook, github_api.delivery(
        "issue_comment", github_api.issue_comment_event(REPO, pr, comment), SECRET))
    tid = follow_up_id(REPO, pr, "comment", comment)
    assert (status, body["tasks"]) == (202, [tid]), body
    spec = hook.client.snapshot().tasks[tid].spec
    assert spec is not None and spec.specialty == "frontend"
    line = github_api.add_review_comment(REPO, pr, WRITER, "/cluster fix", "a.py", 3)
    status, body = post(hook, github_api.delivery(
        "pull_request_review_comment", github_api.review_comment_event(REPO, pr, line), SECRET))
    assert (status, body["tasks"]) == (202, [follow_up_id(REPO, pr, "review_comment", line)])
    plain = github_api.add_comment(REPO, pr, "thanks!", author=WRITER)
    status, body = post(hook, github_api.delivery(
        "issue_comment", github_api.issue_comment_event(REPO, pr, plain), SECRET))
    assert (status, body["status"]) == (200, "ignored") and "does not carry" in body["reason"]


def test_a_comment_on_an_issue_is_not_a_follow_up(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook]) -> None:
    hook = start(forge)
    issue = github_api.add_issue(REPO, "an issue", labels=())
    comment = github_api.add_comment(REPO, issue, "/cluster fix", author=WRITER)
    status, body = post(hook, github_api.delivery(
        "issue_comment", github_api.issue_comment_event(REPO, issue, comment), SECRET))
    assert (status, body["status"]) == (200, "ignored")
    assert "not on a pull request" in body["reason"]
    assert hook.follow_ups() == set()


def test_an_author_without_access_gets_one_polite_answer(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook],
        state: str, tmp_path: Path) -> None:
    polite = FollowUpPolicy(bot_login="cluster-bot", polite=True)
    hook = start(forge, polite)
    comment = github_api.add_comment(REPO, pr, "/cluster fix", author=READER)
    payload = github_api.issue_comment_event(REPO, pr, comment)
    for _ in range(2):
        status, body = post(hook, github_api.delivery("issue_comment", payload, SECRET))
        assert (status, body["status"]) == (200, "skipped") and "no write access" in body["reason"]
    with state_client(state, tmp_path, "poller") as poller:
        assert poll_follow_ups(forge, poller, REPO, polite).created == []
    answers = [c for c in github_api.comments(REPO, pr) if "write access" in c["body"]]
    assert len(answers) == 1
    assert hook.follow_ups() == set()


def test_a_failed_check_run_triggers_only_when_enabled(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook]) -> None:
    run = github_api.add_check_run(REPO, HEAD, "tests", "failure", "1 failed", "E boom")
    passed = github_api.add_check_run(REPO, HEAD, "lint", "success")
    off = start(forge)
    status, body = post(off, github_api.delivery(
        "check_run", github_api.check_run_event(REPO, run), SECRET))
    assert (status, body["status"]) == (200, "ignored") and "checks" in body["reason"]
    off.stop()
    hook = start(forge, FollowUpPolicy(checks=True))
    status, body = post(hook, github_api.delivery(
        "check_run", github_api.check_run_event(REPO, passed), SECRET))
    assert (status, body["status"]) == (200, "ignored") and "not a failure" in body["reason"]
    status, body = post(hook, github_api.delivery(
        "check_run", github_api.check_run_event(REPO, run), SECRET))
    tid = follow_up_id(REPO, pr, "check_run", run)
    assert (status, body["tasks"]) == (202, [tid]), body
    spec = hook.client.snapshot().tasks[tid].spec
    assert spec is not None and spec.follow_up is not None
    assert spec.follow_up.trigger.kind == "check_run" and spec.follow_up.head == HEAD
    stale = github_api.add_check_run(REPO, HEAD, "e2e", "failure")
    payload = github_api.check_run_event(REPO, stale)
    github_api.set_head(REPO, pr, "c" * 40)  # a push before the delivery: an old head's failure
    status, body = post(hook, github_api.delivery("check_run", payload, SECRET))
    assert (status, body["status"]) == (200, "ignored") and "not on the pull" in body["reason"]
    gone = github_api.add_check_run(REPO, HEAD, "e2e", "failure")  # no open pull at HEAD now
    status, body = post(hook, github_api.delivery(
        "check_run", github_api.check_run_event(REPO, gone), SECRET))
    assert (status, body["status"]) == (200, "ignored") and "no pull request" in body["reason"]


def test_a_failed_commit_status_triggers_on_the_pull_request_at_its_commit(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook]) -> None:
    """A status names a commit, not a pull request: the one whose head it is gets the task."""
    failed = github_api.add_status(REPO, HEAD, "ci/build", "failure", "build broke",
                                   "https://ci.example/1")
    passed = github_api.add_status(REPO, HEAD, "ci/lint", "success")
    off = start(forge)
    status, body = post(off, github_api.delivery(
        "status", github_api.status_event(REPO, failed), SECRET))
    assert (status, body["status"]) == (200, "ignored") and "checks" in body["reason"]
    off.stop()
    hook = start(forge, FollowUpPolicy(checks=True))
    status, body = post(hook, github_api.delivery(
        "status", github_api.status_event(REPO, passed), SECRET))
    assert (status, body["status"]) == (200, "ignored") and "not a failure" in body["reason"]
    for expected in (202, 200):  # delivered twice: one task
        status, body = post(hook, github_api.delivery(
            "status", github_api.status_event(REPO, failed), SECRET))
        assert status == expected, body
    tid = follow_up_id(REPO, pr, "status", failed)
    assert hook.follow_ups() == {tid}
    spec = hook.client.snapshot().tasks[tid].spec
    assert spec is not None and spec.follow_up is not None
    assert (spec.follow_up.trigger.kind, spec.follow_up.head) == ("status", HEAD)
    bad = github_api.status_event(REPO, failed)
    del bad["sha"]
    status, body = post(hook, github_api.delivery("status", bad, SECRET))
    assert (status, body["field"]) == (400, "sha"), body


def test_follow_ups_off_leaves_issues_working(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, state: str, tmp_path: Path) -> None:
    hook = Hook(state, tmp_path, None, None, Policy("cluster", specialty="backend"))
    try:
        review = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "x")
        status, body = post(hook, github_api.delivery(
            "pull_request_review", github_api.review_event(REPO, pr, review), SECRET))
        assert (status, body["status"]) == (200, "ignored") and "not enabled" in body["reason"]
        number = github_api.add_issue(REPO, "do it", labels=("cluster",))
        status, body = post(hook, github_api.delivery("issues", issue_event(number), SECRET))
        assert (status, body["status"]) == (202, "created"), body
    finally:
        hook.stop()


def _set(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return changed


_DROP = object()
BROKEN = [
    ("pull_request_review", "review", _DROP, "review.state"),
    ("pull_request_review", "review.id", "12", "review.id"),
    ("pull_request_review", "review.id", True, "review.id"),
    ("pull_request_review", "review.user", None, "review.user.login"),
    ("pull_request_review", "review.state", "shrugged", "review.state"),
    ("pull_request_review", "review.body", 7, "review.body"),
    ("pull_request_review", "review.submitted_at", "yesterday", "review.submitted_at"),
    ("pull_request_review", "pull_request.number", -1, "pull_request.number"),
    ("pull_request_review", "repository.full_name", "no-slash", "repository.full_name"),
    ("pull_request_review_comment", "comment.id", None, "comment.id"),
    ("pull_request_review_comment", "comment.path", 3, "comment.path"),
    ("pull_request_review_comment", "comment.line", "3", "comment.line"),
    ("pull_request_review_comment", "comment.in_reply_to_id", 0, "comment.in_reply_to_id"),
    ("pull_request_review_comment", "pull_request", _DROP, "pull_request.number"),
    ("issue_comment", "issue", [], "issue"),
    ("issue_comment", "issue.number", 2**60, "issue.number"),
    ("issue_comment", "comment.user.login", ["x"], "comment.user.login"),
    ("issue_comment", "comment.body", {"a": 1}, "comment.body"),
    ("check_run", "check_run.id", 1.5, "check_run.id"),
    ("check_run", "check_run.pull_requests", {}, "check_run.pull_requests"),
    ("check_run", "check_run.pull_requests.0.number", "1", "check_run.pull_requests[0].number"),
    ("check_run", "check_run.head_sha", None, "check_run.head_sha"),
    ("check_run", "check_run.output", "text", "check_run.output"),
    ("check_run", "check_run", 5, "check_run"),
]


@pytest.mark.parametrize(("event", "path", "value", "field"), BROKEN)
def test_a_malformed_payload_is_400_naming_the_field(
        github_api: FakeGitHub, forge: IssueFeed, pr: int, start: Callable[..., Hook],
        event: str, path: str, value: Any, field: str) -> None:
    hook = start(forge, FollowUpPolicy(checks=True))
    review = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "x", [
        {"path": "a.py", "line": 1, "body": "/cluster fix"}])
    [line] = [c["id"] for c in github_api.review_comments(REPO, pr)]
    comment = github_api.add_comment(REPO, pr, "/cluster fix", author=WRITER)
    run = github_api.add_check_run(REPO, HEAD, "tests", "failure")
    payloads = {
        "pull_request_review": github_api.review_event(REPO, pr, review),
        "pull_request_review_comment": github_api.review_comment_event(REPO, pr, line),
        "issue_comment": github_api.issue_comment_event(REPO, pr, comment),
        "check_run": github_api.check_run_event(REPO, run),
    }
    status, body = post(hook, github_api.delivery(event, _set(payloads[event], path, value),
                                                  SECRET))
    assert status == 400, body
    assert body["field"] == field and f"'{field}'" in body["error"]
    assert hook.follow_ups() == set()


@pytest.mark.parametrize("event", ["pull_request_review", "pull_request_review_comment",
                                   "issue_comment", "check_run"])
def test_a_payload_that_is_no_object_is_400(
        github_api: FakeGitHub, forge: IssueFeed, start: Callable[..., Hook],
        event: str) -> None:
    hook = start(forge, FollowUpPolicy(checks=True))
    for body in (b"[1, 2]", b'"text"', b"null"):
        headers, _ = github_api.delivery(event, {}, SECRET)
        headers["X-Hub-Signature-256"] = signature(SECRET, body)
        status, answer = post_to(f"http://127.0.0.1:{hook.server.server_address[1]}/",
                                 headers, body)
        assert status == 400 and answer["field"] == "(payload)", answer


def test_serve_command_with_follow_ups(github_api: FakeGitHub, forge: IssueFeed, pr: int,
                                       state: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(DEFAULT_TOKEN + "\n")
    review = github_api.add_review(REPO, pr, WRITER, "CHANGES_REQUESTED", "x")
    comment = github_api.add_comment(REPO, pr, "/cluster fix", author=READER)
    with serve_command(state, tmp_path, "--follow-ups", "--allow", READER,
                       "--github-base-url", github_api.api_url,
                       "--token-file", str(token)) as (url, _):
        for event, payload in (
                ("pull_request_review", github_api.review_event(REPO, pr, review)),
                ("issue_comment", github_api.issue_comment_event(REPO, pr, comment))):
            headers, body = github_api.delivery(event, payload, SECRET)
            status, answer = post_to(url, headers, body)
            assert status == 202, answer


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
TEMPLATES: dict[str, dict[str, Any]] = {
    "pull_request_review": {
        "action": "submitted", "repository": {"full_name": REPO},
        "pull_request": {"number": 1},
        "review": {"id": 5, "user": {"login": WRITER}, "state": "changes_requested",
                   "body": "x", "submitted_at": "2026-12-02T06:00:00Z", "commit_id": HEAD}},
    "pull_request_review_comment": {
        "action": "created", "repository": {"full_name": REPO},
        "pull_request": {"number": 1},
        "comment": {"id": 6, "user": {"login": WRITER}, "body": "/cluster fix", "path": "a.py",
                    "line": 2, "diff_hunk": "@@", "in_reply_to_id": None,
                    "pull_request_review_id": 5, "created_at": "2026-12-02T06:00:00Z"}},
    "issue_comment": {
        "action": "created", "repository": {"full_name": REPO},
        "issue": {"number": 1, "pull_request": {"url": "u"}},
        "comment": {"id": 7, "user": {"login": WRITER}, "body": "/cluster fix",
                    "created_at": "2026-12-02T06:00:00Z"}},
    "check_run": {
        "action": "completed", "repository": {"full_name": REPO},
        "check_run": {"id": 8, "name": "t", "conclusion": "failure", "head_sha": HEAD,
                      "html_url": "u", "completed_at": None, "pull_requests": [{"number": 1}],
                      "output": {"title": None, "summary": "s", "text": None}}},
}


def _paths(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    return [p for key, value in node.items()
            for p in [f"{prefix}{key}", *_paths(value, f"{prefix}{key}.")] if key != "action"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(TEMPLATES)), st.data(), json_values)
def test_any_value_anywhere_is_an_event_a_reason_or_a_named_field(
        event: str, data: st.DataObject, value: Any) -> None:
    template = TEMPLATES[event]
    assert isinstance(parse_event(event, template), Event)
    path = data.draw(st.sampled_from(_paths(template)))
    changed = _set(template, path, value)
    try:
        got = parse_event(event, changed)
    except PayloadError as exc:
        assert exc.field.split("[")[0].split(".")[0] in changed or exc.field == "(payload)"
        assert f"'{exc.field}'" in str(exc)
        return
    assert isinstance(got, Event | str)
