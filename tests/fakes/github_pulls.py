"""The GitHub stand-in's pull-request conversations, as GitHub's REST API and webhooks show them.

Reviews and their line (review) comments, replies in a review thread, check runs, commit
statuses, collaborator permissions, and webhook deliveries signed as GitHub signs them.
:class:`PullConversations` is a mixin of :class:`tests.fakes.github_api.FakeGitHub`: its state
lives in that fake's repos and is guarded by the same lock. The wire helpers (``_json`` and
friends) live here so both modules share them without importing each other in a circle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes import Request, Response

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator

    from tests.fakes.github_api import _Handler, _Repo

DOCS = "https://docs.github.com/rest"
REPO = r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)"
REVIEW_STATES = ("CHANGES_REQUESTED", "COMMENTED", "APPROVED", "DISMISSED", "PENDING")
# What the review API's ``event`` names, and the lower-case webhook spelling, mean.
_STATE_ALIASES = {"REQUEST_CHANGES": "CHANGES_REQUESTED", "APPROVE": "APPROVED",
                  "COMMENT": "COMMENTED"}
ROLES = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
         "read": "read", "none": "none"}  # role_name -> the legacy ``permission`` field
CHECK_CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out",
                     "action_required", "stale")
STATUS_STATES = ("error", "failure", "pending", "success")
CHECKS_APP = "github-actions"
SHA = re.compile(r"[0-9a-f]{40}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _json(status: int, data: object, headers: dict[str, str] | None = None) -> Response:
    base = {
        "content-type": "application/json; charset=utf-8",
        "x-github-media-type": "github.v3; format=json",
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-reset": str(int(datetime.now(UTC).timestamp()) + 3600),
        "x-oauth-scopes": "repo",
    }
    return Response.json(status, data, {**base, **(headers or {})})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"message": message, "documentation_url": DOCS, "status": str(status)}
    return _json(status, body, headers)


def _invalid(resource: str, code: str, field_name: str) -> Response:
    return _json(
        422,
        {
            "message": "Validation Failed",
            "errors": [{"resource": resource, "code": code, "field": field_name}],
            "documentation_url": DOCS,
            "status": "422",
        },
    )


def _no_commit(ref: str) -> Response:
    return _error(422, f"No commit found for SHA: {ref}")


def signature_256(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PullConversations:
    """Pull-request conversation fixtures, routes and webhook payloads of :class:`FakeGitHub`.

    Every review comment belongs to a review, as on GitHub: a lone line comment (or a reply)
    makes a ``COMMENTED`` review with an empty body. Top-level review comments carry no
    ``in_reply_to_id`` key (GitHub leaves it out); replies carry the thread's first comment.
    """

    if TYPE_CHECKING:  # what it uses of FakeGitHub
        repos: dict[str, _Repo]
        login: str
        _state: threading.Lock
        _ids: Iterator[int]

        @property
        def url(self) -> str: ...
        @property
        def api_url(self) -> str: ...
        def _repo(self, match: re.Match[str]) -> _Repo | None: ...
        def _user_json(self, login: str) -> dict[str, Any]: ...
        def _repo_json(self, repo: _Repo) -> dict[str, Any]: ...
        def _pull_json(self, repo: _Repo, pull: dict[str, Any]) -> dict[str, Any]: ...
        def _issue_json(self, repo: _Repo, number: int) -> dict[str, Any] | None: ...
        def _comment_json(
            self, repo: _Repo, number: int, comment: dict[str, Any]
        ) -> dict[str, Any]: ...
        def _page(
            self, request: Request, items: list[dict[str, Any]], key: str | None = None
        ) -> Response: ...
        def _insert_pull(
            self, repo: _Repo, *, title: str, body: str | None, head: str, head_owner: str,
            base: str, draft: bool, author: str, maintainer_can_modify: bool,
            head_sha: str | None = None,
        ) -> dict[str, Any]: ...

    def _pull_routes(self) -> list[tuple[str, re.Pattern[str], _Handler]]:
        pull = REPO + r"/pulls/(?P<n>\d+)"
        commit = REPO + r"/commits/(?P<sha>[^/]+)"
        table: list[tuple[str, str, _Handler]] = [
            ("GET", pull + r"/reviews", self._list_reviews),
            ("GET", pull + r"/reviews/(?P<id>\d+)", self._get_review),
            ("GET", pull + r"/reviews/(?P<id>\d+)/comments", self._list_review_own_comments),
            ("GET", pull + r"/comments", self._list_review_comments),
            ("POST", pull + r"/comments/(?P<id>\d+)/replies", self._reply),
            ("GET", REPO + r"/pulls/comments", self._list_repo_review_comments),
            ("GET", REPO + r"/pulls/comments/(?P<id>\d+)", self._get_review_comment),
            ("GET", REPO + r"/issues/comments", self._list_repo_issue_comments),
            ("GET", REPO + r"/issues/comments/(?P<id>\d+)", self._get_issue_comment),
            ("GET", commit, self._get_commit),
            ("GET", commit + r"/check-runs", self._list_check_runs),
            ("GET", commit + r"/statuses", self._list_statuses),
            ("GET", REPO + r"/statuses/(?P<sha>[^/]+)", self._list_statuses),
            ("GET", commit + r"/status", self._combined_status),
            ("GET", REPO + r"/check-runs/(?P<id>\d+)", self._get_check_run),
            ("GET", REPO + r"/collaborators/(?P<login>[^/]+)/permission", self._permission),
        ]
        return [(method, re.compile(path), handler) for method, path, handler in table]

    # -- fixtures --------------------------------------------------------------------------

    def add_pull(
        self, full_name: str, head: str, *, base: str | None = None,
        title: str = "A pull request", body: str = "", author: str | None = None,
        head_sha: str | None = None, draft: bool = False,
    ) -> int:
        """Open a pull request from ``head`` (a branch of the repo) into ``base`` (default
        branch); ``head_sha`` defaults to the linked git dir's branch, else a made-up sha."""
        with self._state:
            repo = self.repos[full_name.lower()]
            pull = self._insert_pull(
                repo, title=title, body=body, head=head, head_owner=repo.owner,
                base=base or repo.default_branch, draft=draft, author=author or self.login,
                maintainer_can_modify=True, head_sha=head_sha,
            )
            return int(pull["number"])

    def set_head(self, full_name: str, number: int, sha: str) -> None:
        """Move pull request ``number``'s head to commit ``sha`` (as a push to its branch does)."""
        with self._state:
            repo = self.repos[full_name.lower()]
            repo.pulls[number]["head_sha"] = sha
            repo.commits.add(sha)

    def add_commit(self, full_name: str, sha: str) -> None:
        """Make ``sha`` a commit the API knows (check runs and statuses may be asked for it)."""
        with self._state:
            self.repos[full_name.lower()].commits.add(sha)

    def set_permission(self, full_name: str, login: str, permission: str) -> None:
        """``login``'s role on the repo: admin, maintain, write, triage, read or none."""
        if permission not in ROLES:
            raise ValueError(f"permission {permission!r} is not one of {', '.join(ROLES)}")
        with self._state:
            self.repos[full_name.lower()].permissions[login.lower()] = permission

    def add_review(
        self, full_name: str, number: int, author: str, state: str,
        body: str = "", comments: Iterable[Mapping[str, Any]] = (), *,
        commit_id: str | None = None,
    ) -> int:
        """Submit a review on pull request ``number``; ``comments`` are its line comments, each
        ``{path, line, body, diff_hunk?}``. ``state`` is REST's (CHANGES_REQUESTED, ...), the
        webhook's lower-case spelling, or the review ``event`` (REQUEST_CHANGES, ...)."""
        wanted = state.upper()
        wanted = _STATE_ALIASES.get(wanted, wanted)
        if wanted not in REVIEW_STATES:
            raise ValueError(f"review state {state!r} is not one of {', '.join(REVIEW_STATES)}")
        with self._state:
            repo = self.repos[full_name.lower()]
            pull = repo.pulls[number]
            review = self._insert_review(repo, number, author, wanted, body,
                                         commit_id or self._head_sha(repo, pull))
            for item in comments:
                self._insert_review_comment(
                    repo, number, author, str(item["body"]), str(item["path"]),
                    item.get("line"), item.get("diff_hunk"), None, int(review["id"]),
                )
            return int(review["id"])

    def add_review_comment(
        self, full_name: str, number: int, author: str, body: str, path: str,
        line: int | None, *, diff_hunk: str | None = None, in_reply_to: int | None = None,
        review_id: int | None = None,
    ) -> int:
        """A line comment on pull request ``number`` (a reply in ``in_reply_to``'s thread when
        given, taking its path and line); it makes its own COMMENTED review unless
        ``review_id`` names one."""
        with self._state:
            repo = self.repos[full_name.lower()]
            pull = repo.pulls[number]
            if review_id is None:
                review_id = int(self._insert_review(
                    repo, number, author, "COMMENTED", "", self._head_sha(repo, pull))["id"])
            comment = self._insert_review_comment(
                repo, number, author, body, path, line, diff_hunk, in_reply_to, review_id)
            return int(comment["id"])

    def add_check_run(
        self, full_name: str, sha: str, name: str, conclusion: str | None = "failure",
        summary: str = "", text: str = "", *, title: str | None = None,
        status: str = "completed", details_url: str | None = None,
    ) -> int:
        """A check run on commit ``sha`` (made known); ``conclusion`` only when completed."""
        if status == "completed" and conclusion not in CHECK_CONCLUSIONS:
            raise ValueError(f"conclusion {conclusion!r} is not one of {CHECK_CONCLUSIONS}")
        with self._state:
            repo = self.repos[full_name.lower()]
            repo.commits.add(sha)
            now, run_id = _now(), next(self._ids)
            run: dict[str, Any] = {
                "id": run_id, "head_sha": sha, "name": name, "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "title": title if title is not None else f"{name}: {conclusion or status}",
                "summary": summary, "text": text, "started_at": now,
                "completed_at": now if status == "completed" else None,
                "details_url": details_url, "suite_id": int(_sha(f"suite:{sha}")[:7], 16),
            }
            repo.check_runs.setdefault(sha, []).append(run)
            return run_id

    def add_status(
        self, full_name: str, sha: str, context: str, state: str,
        description: str = "", target_url: str | None = None, *, creator: str = "ci-bot",
    ) -> int:
        """A commit status on ``sha`` (made known): state error, failure, pending or success."""
        if state not in STATUS_STATES:
            raise ValueError(f"status state {state!r} is not one of {STATUS_STATES}")
        with self._state:
            repo = self.repos[full_name.lower()]
            repo.commits.add(sha)
            status_id = next(self._ids)
            item: dict[str, Any] = {"id": status_id, "sha": sha, "context": context, "state": state,
                    "description": description, "target_url": target_url,
                    "created_at": _now(), "creator": creator}
            repo.statuses.setdefault(sha, []).append(item)
            return status_id

    def reviews(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Pull request ``number``'s reviews as the REST API shows them, for assertions."""
        with self._state:
            repo = self.repos[full_name.lower()]
            return [self._review_json(repo, r) for r in repo.reviews.get(number, [])]

    def review_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Pull request ``number``'s review comments (replies included), oldest first."""
        with self._state:
            repo = self.repos[full_name.lower()]
            return [self._review_comment_json(repo, c)
                    for c in repo.review_comments.get(number, [])]

    # -- webhooks --------------------------------------------------------------------------

    def delivery(
        self, event: str, payload: Mapping[str, Any], secret: str | Any
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of a webhook delivery of ``payload`` as GitHub posts it, signed with
        ``secret`` (a str, or anything with ``reveal()`` such as :class:`cluster.secret.Secret`)."""
        key = secret.reveal() if hasattr(secret, "reveal") else str(secret)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/7c4b2a1",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "424242",
            "X-GitHub-Hook-Installation-Target-ID": str(payload.get("repository", {}).get("id", 0)),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-Hub-Signature": "sha1=" + hmac.new(key.encode(), body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": signature_256(key, body),
        }
        return headers, body

    def review_event(
        self, full_name: str, number: int, review_id: int, *,
        action: str = "submitted",
    ) -> dict[str, Any]:
        """A ``pull_request_review`` payload; ``review.state`` is lower-case, as webhooks say."""
        with self._state:
            repo = self.repos[full_name.lower()]
            found = [r for r in repo.reviews.get(number, []) if r["id"] == review_id]
            if not found:
                raise KeyError(f"no review {review_id} on {full_name}#{number}")
            review = self._review_json(repo, found[0])
            review["state"] = review["state"].lower()
            return {"action": action, "review": review,
                    "pull_request": self._pull_json(repo, repo.pulls[number]),
                    **self._event_common(repo, found[0]["author"])}

    def review_comment_event(
        self, full_name: str, number: int, comment_id: int, *,
        action: str = "created",
    ) -> dict[str, Any]:
        """A ``pull_request_review_comment`` payload for review comment ``comment_id``."""
        with self._state:
            repo = self.repos[full_name.lower()]
            comment = self._find_review_comment(repo, comment_id, number)
            if comment is None:
                raise KeyError(f"no review comment {comment_id} on {full_name}#{number}")
            return {"action": action, "comment": self._review_comment_json(repo, comment),
                    "pull_request": self._pull_json(repo, repo.pulls[number]),
                    **self._event_common(repo, comment["author"])}

    def issue_comment_event(
        self, full_name: str, number: int, comment_id: int, *,
        action: str = "created",
    ) -> dict[str, Any]:
        """An ``issue_comment`` payload; on a pull request ``issue.pull_request`` is set."""
        with self._state:
            repo = self.repos[full_name.lower()]
            found = [c for c in repo.comments.get(number, []) if c["id"] == comment_id]
            issue = self._issue_json(repo, number)
            if not found or issue is None:
                raise KeyError(f"no comment {comment_id} on {full_name}#{number}")
            return {"action": action, "issue": issue,
                    "comment": self._comment_json(repo, number, found[0]),
                    **self._event_common(repo, found[0]["author"])}

    def check_run_event(
        self, full_name: str, check_run_id: int, *, action: str = "completed",
    ) -> dict[str, Any]:
        """A ``check_run`` payload; ``check_run.pull_requests`` are the open pulls at its sha."""
        with self._state:
            repo = self.repos[full_name.lower()]
            run = self._find_check_run(repo, check_run_id)
            if run is None:
                raise KeyError(f"no check run {check_run_id} on {full_name}")
            return {"action": action, "check_run": self._check_run_json(repo, run),
                    **self._event_common(repo, f"{CHECKS_APP}[bot]")}

    def status_event(self, full_name: str, status_id: int) -> dict[str, Any]:
        """A ``status`` payload for commit status ``status_id``."""
        with self._state:
            repo = self.repos[full_name.lower()]
            found = [s for items in repo.statuses.values() for s in items if s["id"] == status_id]
            if not found:
                raise KeyError(f"no status {status_id} on {full_name}")
            item = found[0]
            api = f"{self.api_url}/repos/{repo.full_name}"
            branches = [
                {"name": p["head"], "commit": {"sha": item["sha"],
                                               "url": f"{api}/commits/{item['sha']}"},
                 "protected": False}
                for p in repo.pulls.values() if self._head_sha(repo, p) == item["sha"]
            ]
            return {
                "id": item["id"], "sha": item["sha"], "name": repo.full_name,
                "target_url": item["target_url"], "context": item["context"],
                "description": item["description"], "state": item["state"],
                "commit": self._commit_json(repo, item["sha"]), "branches": branches,
                "created_at": item["created_at"], "updated_at": item["created_at"],
                **self._event_common(repo, item["creator"]),
            }

    def _event_common(self, repo: _Repo, sender: str) -> dict[str, Any]:
        return {"repository": self._repo_json(repo), "sender": self._user_json(sender)}

    # -- state -----------------------------------------------------------------------------

    def _head_sha(self, repo: _Repo, pull: dict[str, Any]) -> str:
        """The pull's head: its branch in the linked git dir when there, else as recorded."""
        if repo.git_dir is not None:
            found = subprocess.run(
                ["git", "-C", str(repo.git_dir), "rev-parse", "--verify", "-q",
                 f"refs/heads/{pull['head']}^{{commit}}"],
                capture_output=True, text=True, check=False,
            )
            if found.returncode == 0 and SHA.fullmatch(found.stdout.strip()):
                pull["head_sha"] = found.stdout.strip()
                repo.commits.add(pull["head_sha"])
        return str(pull["head_sha"])

    def _resolve(self, repo: _Repo, ref: str) -> str | None:
        """The commit ``ref`` (a sha or a pull's head branch) names, if the API knows it."""
        heads = {p["head"]: self._head_sha(repo, p) for p in repo.pulls.values()}
        if ref in heads:
            return heads[ref]
        if ref in repo.commits or ref in heads.values():
            return ref
        if repo.git_dir is not None and SHA.fullmatch(ref):
            found = subprocess.run(
                ["git", "-C", str(repo.git_dir), "cat-file", "-e", f"{ref}^{{commit}}"],
                capture_output=True, check=False,
            )
            if found.returncode == 0:
                return ref
        return None

    def _insert_review(self, repo: _Repo, number: int, author: str, state: str,
                       body: str, commit_id: str) -> dict[str, Any]:
        review = {"id": next(self._ids), "author": author, "state": state, "body": body,
                  "commit_id": commit_id, "number": number,
                  "submitted_at": None if state == "PENDING" else _now()}
        repo.reviews.setdefault(number, []).append(review)
        return review

    def _insert_review_comment(
        self, repo: _Repo, number: int, author: str, body: str, path: str,
        line: int | None, diff_hunk: str | None, in_reply_to: int | None, review_id: int,
    ) -> dict[str, Any]:
        root = None
        if in_reply_to is not None:
            parent = self._find_review_comment(repo, in_reply_to, number)
            if parent is None:
                raise KeyError(f"no review comment {in_reply_to} on #{number}")
            root = self._find_review_comment(repo, parent["in_reply_to"] or parent["id"], number)
            assert root is not None
            path, line, diff_hunk = root["path"], root["line"], root["diff_hunk"]
        now = _now()
        at = line or 1
        comment = {
            "id": next(self._ids), "number": number, "author": author, "body": body,
            "path": path, "line": line, "original_line": line, "side": "RIGHT",
            "diff_hunk": diff_hunk if diff_hunk is not None
            else f"@@ -{max(at - 3, 1)},3 +{max(at - 3, 1)},4 @@",
            "commit_id": root["commit_id"] if root else
            self._head_sha(repo, repo.pulls[number]),
            "in_reply_to": root["id"] if root else None, "review_id": review_id,
            "created_at": now, "updated_at": now,
        }
        repo.review_comments.setdefault(number, []).append(comment)
        return comment

    def _find_review_comment(self, repo: _Repo, comment_id: int,
                             number: int | None = None) -> dict[str, Any] | None:
        for pr, items in repo.review_comments.items():
            for comment in items:
                if comment["id"] == comment_id and number in (None, pr):
                    return comment
        return None

    def _find_check_run(self, repo: _Repo, run_id: int) -> dict[str, Any] | None:
        runs = [r for items in repo.check_runs.values() for r in items if r["id"] == run_id]
        return runs[0] if runs else None

    def _association(self, repo: _Repo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        role = repo.permissions.get(login.lower(), "none")
        return "COLLABORATOR" if role != "none" else "NONE"

    # -- JSON shapes -----------------------------------------------------------------------

    def _review_json(self, repo: _Repo, review: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.url}/{repo.full_name}/pull/{review['number']}"
        data: dict[str, Any] = {
            "id": review["id"],
            "node_id": f"PRR_{review['id']}",
            "user": self._user_json(review["author"]),
            "body": review["body"],
            "state": review["state"],
            "html_url": f"{html}#pullrequestreview-{review['id']}",
            "pull_request_url": f"{api}/pulls/{review['number']}",
            "author_association": self._association(repo, review["author"]),
            "_links": {"html": {"href": f"{html}#pullrequestreview-{review['id']}"},
                       "pull_request": {"href": f"{api}/pulls/{review['number']}"}},
            "commit_id": review["commit_id"],
        }
        if review["submitted_at"] is not None:
            data["submitted_at"] = review["submitted_at"]
        return data

    def _review_comment_json(self, repo: _Repo,
                             comment: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        number, cid = comment["number"], comment["id"]
        html = f"{self.url}/{repo.full_name}/pull/{number}#discussion_r{cid}"
        data: dict[str, Any] = {
            "url": f"{api}/pulls/comments/{cid}",
            "pull_request_review_id": comment["review_id"],
            "id": cid,
            "node_id": f"PRRC_{cid}",
            "diff_hunk": comment["diff_hunk"],
            "path": comment["path"],
            "position": comment["line"],
            "original_position": comment["original_line"],
            "commit_id": comment["commit_id"],
            "original_commit_id": comment["commit_id"],
            "user": self._user_json(comment["author"]),
            "body": comment["body"],
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "html_url": html,
            "pull_request_url": f"{api}/pulls/{number}",
            "author_association": self._association(repo, comment["author"]),
            "_links": {"self": {"href": f"{api}/pulls/comments/{cid}"}, "html": {"href": html},
                       "pull_request": {"href": f"{api}/pulls/{number}"}},
            "reactions": {"url": f"{api}/pulls/comments/{cid}/reactions", "total_count": 0},
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "line": comment["line"],
            "original_line": comment["original_line"],
            "side": comment["side"],
            "subject_type": "line",
        }
        if comment["in_reply_to"] is not None:  # GitHub sends the key on replies only
            data["in_reply_to_id"] = comment["in_reply_to"]
        return data

    def _app_json(self) -> dict[str, Any]:
        return {
            "id": 15368, "slug": CHECKS_APP, "node_id": "MDM6QXBwMTUzNjg=",
            "owner": self._user_json("github"), "name": "GitHub Actions", "description": "",
            "external_url": "https://help.github.com/en/actions",
            "html_url": f"{self.url}/apps/{CHECKS_APP}",
            "created_at": "2018-07-30T09:30:17Z", "updated_at": "2024-01-01T00:00:00Z",
            "permissions": {"checks": "write", "statuses": "write"},
            "events": ["check_run", "check_suite"],
        }

    def _mini_pull_json(self, repo: _Repo, pull: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        mini_repo = {"id": repo.id, "url": api, "name": repo.name}
        return {
            "url": f"{api}/pulls/{pull['number']}", "id": pull["id"], "number": pull["number"],
            "head": {"ref": pull["head"], "sha": self._head_sha(repo, pull), "repo": mini_repo},
            "base": {"ref": pull["base"], "sha": _sha(f"{repo.full_name}:{pull['base']}"),
                     "repo": mini_repo},
        }

    def _check_run_json(self, repo: _Repo, run: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.url}/{repo.full_name}/runs/{run['id']}"
        pulls = [p for p in repo.pulls.values()
                 if p["state"] == "open" and self._head_sha(repo, p) == run["head_sha"]]
        return {
            "id": run["id"],
            "name": run["name"],
            "node_id": f"CR_{run['id']}",
            "head_sha": run["head_sha"],
            "external_id": "",
            "url": f"{api}/check-runs/{run['id']}",
            "html_url": html,
            "details_url": run["details_url"] or html,
            "status": run["status"],
            "conclusion": run["conclusion"],
            "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "output": {
                "title": run["title"], "summary": run["summary"], "text": run["text"],
                "annotations_count": 0,
                "annotations_url": f"{api}/check-runs/{run['id']}/annotations",
            },
            "check_suite": {
                "id": run["suite_id"], "head_sha": run["head_sha"],
                "head_branch": pulls[0]["head"] if pulls else None,
                "status": run["status"], "conclusion": run["conclusion"],
                "url": f"{api}/check-suites/{run['suite_id']}",
            },
            "app": self._app_json(),
            "pull_requests": [self._mini_pull_json(repo, p) for p in pulls],
        }

    def _status_json(self, repo: _Repo, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"{self.api_url}/repos/{repo.full_name}/statuses/{item['sha']}",
            "avatar_url": f"{self.url}/avatars/{item['creator']}",
            "id": item["id"],
            "node_id": f"SC_{item['id']}",
            "state": item["state"],
            "description": item["description"],
            "target_url": item["target_url"],
            "context": item["context"],
            "created_at": item["created_at"],
            "updated_at": item["created_at"],
            "creator": self._user_json(item["creator"]),
        }

    def _commit_json(self, repo: _Repo, sha: str) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        person = {"name": repo.owner, "email": f"{repo.owner}@users.noreply.github.com",
                  "date": "2024-01-01T00:00:00Z"}
        return {
            "sha": sha, "node_id": f"C_{sha[:12]}", "url": f"{api}/commits/{sha}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {"url": f"{api}/git/commits/{sha}", "author": person, "committer": person,
                       "message": f"commit {sha[:7]}", "comment_count": 0,
                       "tree": {"sha": _sha(f"tree:{sha}"),
                                "url": f"{api}/git/trees/{_sha(f'tree:{sha}')}"}},
            "author": self._user_json(repo.owner), "committer": self._user_json(repo.owner),
            "parents": [], "stats": {"total": 0, "additions": 0, "deletions": 0}, "files": [],
        }

    # -- serving ---------------------------------------------------------------------------

    def _pull_or_none(self, match: re.Match[str]) -> tuple[_Repo, int] | None:
        repo = self._repo(match)
        number = int(match["n"])
        return (repo, number) if repo is not None and number in repo.pulls else None

    def _list_reviews(self, request: Request, match: re.Match[str]) -> Response:
        found = self._pull_or_none(match)
        if found is None:
            return _error(404, "Not Found")
        repo, number = found
        return self._page(request, [self._review_json(repo, r)
                                    for r in repo.reviews.get(number, [])])

    def _get_review(self, request: Request, match: re.Match[str]) -> Response:
        found = self._pull_or_none(match)
        reviews = [r for r in found[0].reviews.get(found[1], [])
                   if r["id"] == int(match["id"])] if found else []
        if found is None or not reviews:
            return _error(404, "Not Found")
        return _json(200, self._review_json(found[0], reviews[0]))

    def _list_review_own_comments(self, request: Request,
                                  match: re.Match[str]) -> Response:
        found = self._pull_or_none(match)
        if found is None or all(r["id"] != int(match["id"])
                                for r in found[0].reviews.get(found[1], [])):
            return _error(404, "Not Found")
        repo, number = found
        return self._page(request, [self._review_comment_json(repo, c)
                                    for c in repo.review_comments.get(number, [])
                                    if c["review_id"] == int(match["id"])])

    def _list_review_comments(self, request: Request,
                              match: re.Match[str]) -> Response:
        found = self._pull_or_none(match)
        if found is None:
            return _error(404, "Not Found")
        repo, number = found
        items = [self._review_comment_json(repo, c) for c in repo.review_comments.get(number, [])]
        return self._page(request, _sorted(request, _since(request, items)))

    def _list_repo_review_comments(self, request: Request,
                                   match: re.Match[str]) -> Response:
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        items = [self._review_comment_json(repo, c)
                 for pr in sorted(repo.review_comments) for c in repo.review_comments[pr]]
        items.sort(key=lambda c: int(c["id"]))
        return self._page(request, _sorted(request, _since(request, items)))

    def _get_review_comment(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        comment = self._find_review_comment(repo, int(match["id"])) if repo else None
        if repo is None or comment is None:
            return _error(404, "Not Found")
        return _json(200, self._review_comment_json(repo, comment))

    def _reply(self, request: Request, match: re.Match[str]) -> Response:
        found = self._pull_or_none(match)
        parent = self._find_review_comment(found[0], int(match["id"]), found[1]) if found else None
        if found is None or parent is None:
            return _error(404, "Not Found")
        body = (request.json() or {}).get("body")
        if not isinstance(body, str) or not body.strip():
            return _invalid("PullRequestReviewComment", "missing_field", "body")
        repo, number = found
        review = self._insert_review(repo, number, self.login, "COMMENTED", "",
                                     self._head_sha(repo, repo.pulls[number]))
        comment = self._insert_review_comment(repo, number, self.login, body, parent["path"],
                                              parent["line"], None, parent["id"], review["id"])
        return _json(201, self._review_comment_json(repo, comment))

    def _list_repo_issue_comments(self, request: Request,
                                  match: re.Match[str]) -> Response:
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        items = [self._comment_json(repo, number, c)
                 for number, comments in repo.comments.items() for c in comments]
        items.sort(key=lambda c: int(c["id"]))
        return self._page(request, _sorted(request, _since(request, items)))

    def _get_issue_comment(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        found = [(number, c) for number, items in (repo.comments.items() if repo else [])
                 for c in items if c["id"] == int(match["id"])]
        if repo is None or not found:
            return _error(404, "Not Found")
        return _json(200, self._comment_json(repo, *found[0]))

    def _commit_or_error(self,
                         match: re.Match[str]) -> tuple[_Repo, str] | Response:
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        sha = self._resolve(repo, match["sha"])
        return (repo, sha) if sha is not None else _no_commit(match["sha"])

    def _get_commit(self, request: Request, match: re.Match[str]) -> Response:
        found = self._commit_or_error(match)
        if isinstance(found, Response):
            return found
        return _json(200, self._commit_json(*found))

    def _list_check_runs(self, request: Request, match: re.Match[str]) -> Response:
        """Check runs on a commit; ``filter=latest`` (the default) keeps each name's newest."""
        found = self._commit_or_error(match)
        if isinstance(found, Response):
            return found
        repo, sha = found
        runs = list(repo.check_runs.get(sha, []))
        name = request.query.get("check_name", [""])[0]
        status = request.query.get("status", [""])[0]
        if request.query.get("filter", ["latest"])[0] == "latest":
            newest = {r["name"]: r for r in runs}
            runs = [r for r in runs if newest[r["name"]] is r]
        runs = [r for r in runs if name in ("", r["name"]) and status in ("", r["status"])]
        return self._page(request, [self._check_run_json(repo, r) for r in runs],
                          key="check_runs")

    def _get_check_run(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        run = self._find_check_run(repo, int(match["id"])) if repo else None
        if repo is None or run is None:
            return _error(404, "Not Found")
        return _json(200, self._check_run_json(repo, run))

    def _list_statuses(self, request: Request, match: re.Match[str]) -> Response:
        """A commit's statuses, newest first, as GitHub lists them."""
        found = self._commit_or_error(match)
        if isinstance(found, Response):
            return found
        repo, sha = found
        items = [self._status_json(repo, s) for s in reversed(repo.statuses.get(sha, []))]
        return self._page(request, items)

    def _combined_status(self, request: Request, match: re.Match[str]) -> Response:
        found = self._commit_or_error(match)
        if isinstance(found, Response):
            return found
        repo, sha = found
        latest: dict[str, dict[str, Any]] = {}
        for item in reversed(repo.statuses.get(sha, [])):
            latest.setdefault(item["context"], item)
        states = {s["state"] for s in latest.values()}
        state = ("failure" if states & {"failure", "error"}
                 else "pending" if not states or "pending" in states else "success")
        api = f"{self.api_url}/repos/{repo.full_name}"
        return _json(200, {
            "state": state, "sha": sha, "total_count": len(latest),
            "statuses": [self._status_json(repo, s) for s in latest.values()],
            "repository": self._repo_json(repo), "commit_url": f"{api}/commits/{sha}",
            "url": f"{api}/commits/{sha}/status",
        })

    def _permission(self, request: Request, match: re.Match[str]) -> Response:
        """A collaborator's permission; 404 for a login that is no collaborator of the repo."""
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        login = match["login"]
        role = repo.permissions.get(login.lower())
        if role is None and login.lower() in (repo.owner.lower(), self.login.lower()):
            role = "admin"
        if role is None:
            return _error(404, "Not Found")
        flags = {"admin": role == "admin", "maintain": role in ("admin", "maintain"),
                 "push": ROLES[role] in ("admin", "write"),
                 "triage": ROLES[role] != "none" and role != "read",
                 "pull": role != "none"}
        user = {**self._user_json(login), "permissions": flags, "role_name": role}
        return _json(200, {"permission": ROLES[role], "role_name": role, "user": user})


def _since(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items updated at or after ``since`` (ISO 8601 UTC, as PyGithub sends it)."""
    since = request.query.get("since", [""])[0]
    return [i for i in items if i["updated_at"] >= since] if since else items


def _sorted(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sort = request.query.get("sort", [""])[0]
    if sort not in ("created", "updated"):
        return items
    field_name = f"{sort}_at"
    descending = request.query.get("direction", ["asc" if sort == "created" else "desc"])[0]
    return sorted(items, key=lambda i: (i[field_name], i["id"]), reverse=descending == "desc")
