"""A fake GitHub REST API (repos, issues, comments, pulls, user) with in-memory state."""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tests.fakes import FakeServer, Request, Response

DEFAULT_TOKEN = "ghp_faketesttoken0000000000000000000000"
DOCS = "https://docs.github.com/rest"
API_PREFIX = "/api/v3"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class _Repo:
    owner: str
    name: str
    id: int
    default_branch: str
    private: bool
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def next_number(self) -> int:
        # Issues and pull requests share one sequence of numbers, as on GitHub.
        return max([0, *self.issues, *self.pulls]) + 1


_Handler = Callable[[Request, re.Match[str]], Response]


class FakeGitHub(FakeServer):
    """Serves what PyGithub calls for; accepts paths with or without the ``/api/v3`` prefix.

    Point PyGithub at :attr:`api_url` (GitHub Enterprise style). ``token`` is the only valid
    token, owned by ``login``. State lives in :attr:`repos`; add fixtures with :meth:`add_repo`,
    :meth:`add_issue` and :meth:`add_comment`.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, login: str = "cluster-bot") -> None:
        super().__init__()
        self.token = token
        self.login = login
        self.repos: dict[str, _Repo] = {}
        self._state = threading.Lock()
        self._ids = itertools.count(1000)
        self._routes: list[tuple[str, re.Pattern[str], _Handler]] = [
            ("GET", re.compile(r"/user"), self._get_user),
            ("GET", re.compile(r"/users/(?P<login>[^/]+)"), self._get_named_user),
            ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)"), self._get_repo),
            (
                "GET",
                re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)"),
                self._get_issue,
            ),
            (
                "GET",
                re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments"),
                self._list_comments,
            ),
            (
                "POST",
                re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments"),
                self._create_comment,
            ),
            ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues"), self._list_issues),
            ("GET", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls"), self._list_pulls),
            ("POST", re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls"), self._create_pull),
            (
                "GET",
                re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)"),
                self._get_pull,
            ),
            (
                "PATCH",
                re.compile(r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/pulls/(?P<n>\d+)"),
                self._update_pull,
            ),
        ]

    @property
    def api_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    # -- fixtures --------------------------------------------------------------------------

    def add_repo(
        self, full_name: str, *, default_branch: str = "main", private: bool = False
    ) -> None:
        owner, name = full_name.split("/")
        with self._state:
            self.repos[full_name.lower()] = _Repo(
                owner, name, next(self._ids), default_branch, private
            )

    def add_issue(
        self, full_name: str, title: str, body: str = "", *, author: str = "octocat",
        labels: tuple[str, ...] = (),
    ) -> int:
        with self._state:
            repo = self.repos[full_name.lower()]
            number = repo.next_number()
            repo.issues[number] = {
                "number": number,
                "title": title,
                "body": body,
                "author": author,
                "state": "open",
                "id": next(self._ids),
                "created_at": _now(),
                "labels": [],
            }
        for name in labels:
            self.label_issue(full_name, number, name)
        return number

    def label_issue(self, full_name: str, number: int, name: str) -> dict[str, Any]:
        """Add label ``name`` to an issue; returns the label as the API shows it."""
        with self._state:
            repo = self.repos[full_name.lower()]
            label = {
                "id": int(_sha(f"{repo.full_name}:{name}")[:6], 16),
                "node_id": f"LA_{_sha(name)[:8]}",
                "url": f"{self.api_url}/repos/{repo.full_name}/labels/{name}",
                "name": name,
                "color": "ededed",
                "default": False,
                "description": None,
            }
            labels = repo.issues[number]["labels"]
            if all(item["name"] != name for item in labels):
                labels.append(label)
            return label

    def close_issue(self, full_name: str, number: int) -> None:
        with self._state:
            self.repos[full_name.lower()].issues[number]["state"] = "closed"

    def add_comment(
        self, full_name: str, number: int, body: str, *, author: str = "octocat"
    ) -> None:
        with self._state:
            self._append_comment(self.repos[full_name.lower()], number, body, author)

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        """The pull requests of a repo as the API shows them, for assertions."""
        with self._state:
            repo = self.repos[full_name.lower()]
            return [self._pull_json(repo, p) for p in repo.pulls.values()]

    def comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self._state:
            repo = self.repos[full_name.lower()]
            return [self._comment_json(repo, number, c) for c in repo.comments.get(number, [])]

    # -- JSON shapes -----------------------------------------------------------------------

    def _user_json(self, login: str) -> dict[str, Any]:
        user_id = int(_sha(login)[:6], 16)
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{self.url}/{login}",
            "type": "User",
            "site_admin": False,
        }

    def _repo_json(self, repo: _Repo) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self._user_json(repo.owner),
            "html_url": f"{self.url}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": api,
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "clone_url": f"{self.url}/{repo.full_name}.git",
            "ssh_url": f"git@127.0.0.1:{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "archived": False,
            "disabled": False,
            "open_issues_count": len(repo.issues),
            "permissions": {
                "admin": True,
                "maintain": True,
                "push": True,
                "triage": True,
                "pull": True,
            },
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": _now(),
            "pushed_at": _now(),
        }

    def _issue_json(self, repo: _Repo, number: int) -> dict[str, Any] | None:
        api = f"{self.api_url}/repos/{repo.full_name}"
        if number in repo.pulls:
            pull = repo.pulls[number]
            extra: dict[str, Any] = {
                "pull_request": {
                    "url": f"{api}/pulls/{number}",
                    "html_url": f"{self.url}/{repo.full_name}/pull/{number}",
                    "diff_url": f"{self.url}/{repo.full_name}/pull/{number}.diff",
                    "patch_url": f"{self.url}/{repo.full_name}/pull/{number}.patch",
                    "merged_at": None,
                }
            }
            issue = {**pull, "labels": []}
            html = f"{self.url}/{repo.full_name}/pull/{number}"
        elif number in repo.issues:
            issue, extra = repo.issues[number], {}
            html = f"{self.url}/{repo.full_name}/issues/{number}"
        else:
            return None
        return {
            "url": f"{api}/issues/{number}",
            "repository_url": api,
            "comments_url": f"{api}/issues/{number}/comments",
            "labels_url": f"{api}/issues/{number}/labels{{/name}}",
            "events_url": f"{api}/issues/{number}/events",
            "html_url": html,
            "id": issue["id"],
            "node_id": f"I_{issue['id']}",
            "number": number,
            "title": issue["title"],
            "user": self._user_json(issue["author"]),
            "labels": issue["labels"],
            "state": issue["state"],
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(repo.comments.get(number, [])),
            "created_at": issue["created_at"],
            "updated_at": issue["created_at"],
            "closed_at": None,
            "author_association": "OWNER",
            "body": issue["body"],
            "state_reason": None,
            **extra,
        }

    def _comment_json(self, repo: _Repo, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "url": f"{api}/issues/comments/{comment['id']}",
            "html_url": f"{self.url}/{repo.full_name}/issues/{number}#issuecomment-{comment['id']}",
            "issue_url": f"{api}/issues/{number}",
            "id": comment["id"],
            "node_id": f"IC_{comment['id']}",
            "user": self._user_json(comment["author"]),
            "created_at": comment["created_at"],
            "updated_at": comment["created_at"],
            "author_association": "OWNER",
            "body": comment["body"],
        }

    def _ref_json(self, repo: _Repo, owner: str, ref: str) -> dict[str, Any]:
        return {
            "label": f"{owner}:{ref}",
            "ref": ref,
            "sha": _sha(f"{repo.full_name}:{ref}"),
            "user": self._user_json(owner),
            "repo": self._repo_json(repo),
        }

    def _pull_json(self, repo: _Repo, pull: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.full_name}"
        number = pull["number"]
        html = f"{self.url}/{repo.full_name}/pull/{number}"
        return {
            "url": f"{api}/pulls/{number}",
            "id": pull["id"],
            "node_id": f"PR_{pull['id']}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{number}",
            "comments_url": f"{api}/issues/{number}/comments",
            "commits_url": f"{api}/pulls/{number}/commits",
            "number": number,
            "state": pull["state"],
            "locked": False,
            "title": pull["title"],
            "user": self._user_json(pull["author"]),
            "body": pull["body"],
            "created_at": pull["created_at"],
            "updated_at": pull["updated_at"],
            "closed_at": pull["closed_at"],
            "merged_at": None,
            "merge_commit_sha": None,
            "draft": pull["draft"],
            "head": self._ref_json(repo, pull["head_owner"], pull["head"]),
            "base": self._ref_json(repo, repo.owner, pull["base"]),
            "merged": False,
            "mergeable": None,
            "comments": len(repo.comments.get(number, [])),
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
            "maintainer_can_modify": pull["maintainer_can_modify"],
            "author_association": "OWNER",
        }

    # -- serving ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path.removeprefix(API_PREFIX).rstrip("/") or "/"
        token = request.headers.get("authorization", "").partition(" ")[2]
        if token and token != self.token:
            return _error(401, "Bad credentials")
        if not token and (request.method != "GET" or path == "/user"):
            return _error(401, "Requires authentication")
        known_path = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            known_path = True
            if method == request.method:
                with self._state:
                    return handler(request, match)
        return _error(405, "Method Not Allowed") if known_path else _error(404, "Not Found")

    def _repo(self, match: re.Match[str]) -> _Repo | None:
        return self.repos.get(f"{match['o']}/{match['r']}".lower())

    def _get_user(self, request: Request, match: re.Match[str]) -> Response:
        return _json(200, self._user_json(self.login))

    def _get_named_user(self, request: Request, match: re.Match[str]) -> Response:
        return _json(200, self._user_json(match["login"]))

    def _get_repo(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        return _json(200, self._repo_json(repo)) if repo else _error(404, "Not Found")

    def _get_issue(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        issue = self._issue_json(repo, int(match["n"])) if repo else None
        return _json(200, issue) if issue else _error(404, "Not Found")

    def _list_comments(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        number = int(match["n"])
        if repo is None or self._issue_json(repo, number) is None:
            return _error(404, "Not Found")
        items = [self._comment_json(repo, number, c) for c in repo.comments.get(number, [])]
        return self._page(request, items)

    def _create_comment(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        number = int(match["n"])
        if repo is None or self._issue_json(repo, number) is None:
            return _error(404, "Not Found")
        body = (request.json() or {}).get("body")
        if not isinstance(body, str) or not body:
            return _invalid("IssueComment", "missing_field", "body")
        comment = self._append_comment(repo, number, body, self.login)
        return _json(201, self._comment_json(repo, number, comment))

    def _append_comment(self, repo: _Repo, number: int, body: str, author: str) -> dict[str, Any]:
        comment = {"id": next(self._ids), "body": body, "author": author, "created_at": _now()}
        repo.comments.setdefault(number, []).append(comment)
        return comment

    def _list_issues(self, request: Request, match: re.Match[str]) -> Response:
        """Issues and pull requests, newest first, filtered by ``state`` and ``labels``."""
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        state = request.query.get("state", ["open"])[0]
        wanted = {n for n in request.query.get("labels", [""])[0].split(",") if n}
        items = []
        for number in sorted([*repo.issues, *repo.pulls], reverse=True):
            issue = self._issue_json(repo, number)
            assert issue is not None
            names = {label["name"] for label in issue["labels"]}
            if state in ("all", issue["state"]) and wanted <= names:
                items.append(issue)
        return self._page(request, items)

    def _list_pulls(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        state = request.query.get("state", ["open"])[0]
        head = request.query.get("head", [""])[0]
        base = request.query.get("base", [""])[0]
        items = [
            self._pull_json(repo, p)
            for p in sorted(repo.pulls.values(), key=lambda p: -int(p["number"]))
            if state in ("all", p["state"])
            and (not head or head in (f"{p['head_owner']}:{p['head']}", p["head"]))
            and (not base or base == p["base"])
        ]
        return self._page(request, items)

    def _create_pull(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        if repo is None:
            return _error(404, "Not Found")
        data = request.json() or {}
        for name in ("title", "head", "base"):
            if not isinstance(data.get(name), str) or not data[name]:
                return _invalid("PullRequest", "missing_field", name)
        head_owner, _, head = data["head"].rpartition(":")
        head_owner = head_owner or repo.owner
        for pull in repo.pulls.values():
            if (pull["state"], pull["head_owner"], pull["head"], pull["base"]) == (
                "open",
                head_owner,
                head,
                data["base"],
            ):
                return _json(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": "A pull request already exists for "
                                f"{head_owner}:{head}.",
                            }
                        ],
                        "documentation_url": f"{DOCS}/pulls/pulls#create-a-pull-request",
                        "status": "422",
                    },
                )
        number = repo.next_number()
        now = _now()
        repo.pulls[number] = {
            "number": number,
            "id": next(self._ids),
            "title": data["title"],
            "body": data.get("body"),
            "head": head,
            "head_owner": head_owner,
            "base": data["base"],
            "state": "open",
            "draft": bool(data.get("draft", False)),
            "author": self.login,
            "maintainer_can_modify": bool(data.get("maintainer_can_modify", True)),
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
        }
        return _json(201, self._pull_json(repo, repo.pulls[number]))

    def _get_pull(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        pull = repo.pulls.get(int(match["n"])) if repo else None
        return (
            _json(200, self._pull_json(repo, pull)) if repo and pull else _error(404, "Not Found")
        )

    def _update_pull(self, request: Request, match: re.Match[str]) -> Response:
        repo = self._repo(match)
        pull = repo.pulls.get(int(match["n"])) if repo else None
        if repo is None or pull is None:
            return _error(404, "Not Found")
        data = request.json() or {}
        if data.get("state") not in (None, "open", "closed"):
            return _invalid("PullRequest", "invalid", "state")
        for name in ("title", "body", "base", "state", "maintainer_can_modify"):
            if name in data:
                pull[name] = data[name]
        pull["updated_at"] = _now()
        pull["closed_at"] = pull["updated_at"] if pull["state"] == "closed" else None
        return _json(200, self._pull_json(repo, pull))

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        """One page of ``items`` with GitHub's Link header (per_page default 30, at most 100)."""
        per_page = min(max(int(request.query.get("per_page", ["30"])[0]), 1), 100)
        page = max(int(request.query.get("page", ["1"])[0]), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)

        def link(number: int, rel: str) -> str:
            query = {k: v[0] for k, v in request.query.items()} | {"page": str(number)}
            return f'<{self.url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        links = []
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = {"link": ", ".join(links)} if links else {}
        return _json(200, items[(page - 1) * per_page : page * per_page], headers)


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


def _error(status: int, message: str) -> Response:
    return _json(status, {"message": message, "documentation_url": DOCS, "status": str(status)})


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
