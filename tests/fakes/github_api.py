"""A fake GitHub REST API (repos, issues, comments, pulls, user) with in-memory state.

Pull-request conversations (reviews, review comments, checks, statuses, permissions) and
webhook deliveries are in :mod:`tests.fakes.github_pulls`, a mixin of :class:`FakeGitHub`.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.fakes import FakeServer, Request, Response
from tests.fakes.git_http import http_backend, token_of, unauthorized
from tests.fakes.github_pulls import (
    DOCS,
    PullConversations,
    _error,
    _invalid,
    _json,
    _now,
    _sha,
)

DEFAULT_TOKEN = "ghp_faketesttoken0000000000000000000000"
API_PREFIX = "/api/v3"
# A clone URL's requests (info/refs, git-upload-pack, git-receive-pack), outside the API.
GIT_PATH = re.compile(r"/(?P<o>[A-Za-z0-9_.-]+)/(?P<r>[A-Za-z0-9_.-]+?)\.git(?P<rest>/.*)")
RATE_LIMIT_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)


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
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    review_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by head sha
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by sha
    permissions: dict[str, str] = field(default_factory=dict)  # lower-case login -> role
    commits: set[str] = field(default_factory=set)  # shas the API knows
    git_dir: Path | None = None  # a real git repo whose branches are the pulls' heads

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def next_number(self) -> int:
        # Issues and pull requests share one sequence of numbers, as on GitHub.
        return max([0, *self.issues, *self.pulls]) + 1


_Handler = Callable[[Request, re.Match[str]], Response]


class FakeGitHub(FakeServer, PullConversations):
    """Serves what PyGithub calls for; accepts paths with or without the ``/api/v3`` prefix.

    Point PyGithub at :attr:`api_url` (GitHub Enterprise style). ``token`` is the only valid
    token, owned by ``login``. State lives in :attr:`repos`; add fixtures with :meth:`add_repo`,
    :meth:`add_issue` and :meth:`add_comment` (and :class:`PullConversations`' for pulls).
    """

    def __init__(self, token: str = DEFAULT_TOKEN, login: str = "cluster-bot") -> None:
        super().__init__()
        self.token = token
        self.login = login
        self.repos: dict[str, _Repo] = {}
        self._state = threading.Lock()
        self._ids = itertools.count(1000)
        self._rate_limited = 0  # how many requests from now on answer 403 rate limit
        self._rate_reset = 0.0
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
            *self._pull_routes(),
        ]

    @property
    def api_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    # -- fixtures --------------------------------------------------------------------------

    def add_repo(
        self, full_name: str, *, default_branch: str = "main", private: bool = False,
        git_dir: Path | str | None = None,
    ) -> None:
        """``git_dir``: a real git repo (a test's remote) whose branches are the heads of the
        pulls from them, so a push moves a pull's ``head.sha`` as on GitHub; its ``clone_url``
        serves it over smart HTTP to the token (:meth:`_serve_git`)."""
        owner, name = full_name.split("/")
        with self._state:
            self.repos[full_name.lower()] = _Repo(
                owner, name, next(self._ids), default_branch, private,
                git_dir=Path(git_dir) if git_dir is not None else None,
            )

    def rate_limited(self, times: int = 1, reset_in: float = 60.0) -> None:
        """The next ``times`` requests answer 403 as GitHub's spent primary rate limit does:
        ``x-ratelimit-remaining: 0`` and the reset ``reset_in`` seconds from now."""
        with self._state:
            self._rate_limited = times
            self._rate_reset = datetime.now(UTC).timestamp() + reset_in

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
    ) -> int:
        """A comment on issue (or pull request) ``number``; returns its id."""
        with self._state:
            repo = self.repos[full_name.lower()]
            return int(self._append_comment(repo, number, body, author)["id"])

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
            "type": "Bot" if login.endswith("[bot]") else "User",
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

    def _ref_json(
        self, repo: _Repo, owner: str, ref: str, sha: str | None = None
    ) -> dict[str, Any]:
        return {
            "label": f"{owner}:{ref}",
            "ref": ref,
            "sha": sha or _sha(f"{repo.full_name}:{ref}"),
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
            "head": self._ref_json(
                repo, pull["head_owner"], pull["head"], self._head_sha(repo, pull)
            ),
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
        git = GIT_PATH.fullmatch(request.path)
        if git is not None:
            return self._serve_git(request, git)
        path = request.path.removeprefix(API_PREFIX).rstrip("/") or "/"
        token = request.headers.get("authorization", "").partition(" ")[2]
        if token and token != self.token:
            return _error(401, "Bad credentials")
        if not token and (request.method != "GET" or path == "/user"):
            return _error(401, "Requires authentication")
        with self._state:
            limited = self._rate_limited > 0
            self._rate_limited -= 1 if limited else 0
        if limited:
            headers = {"x-ratelimit-remaining": "0",
                       "x-ratelimit-reset": str(int(self._rate_reset)),
                       "x-ratelimit-used": "5000"}
            return _json(403, {"message": "API rate limit exceeded for user ID 1.",
                               "documentation_url": RATE_LIMIT_DOCS, "status": "403"}, headers)
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

    def _serve_git(self, request: Request, match: re.Match[str]) -> Response:
        """A linked repo's clone URL (``<url>/<owner>/<name>.git``): git's smart HTTP by the
        real ``git http-backend``, for the token as a Basic password, as GitHub takes it."""
        with self._state:
            repo = self.repos.get(f"{match['o']}/{match['r']}".lower())
        if repo is None or repo.git_dir is None:
            return _error(404, "Not Found")
        if token_of(request.headers.get("authorization", "")) != self.token:
            return unauthorized()
        return http_backend(repo.git_dir.parent, f"/{repo.git_dir.name}{match['rest']}", request)

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
        return self._page(request, [c for c in items
                                    if c["updated_at"] >= request.query.get("since", [""])[0]])

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
        pull = self._insert_pull(
            repo, title=data["title"], body=data.get("body"), head=head, head_owner=head_owner,
            base=data["base"], draft=bool(data.get("draft", False)), author=self.login,
            maintainer_can_modify=bool(data.get("maintainer_can_modify", True)),
        )
        return _json(201, self._pull_json(repo, pull))

    def _insert_pull(
        self, repo: _Repo, *, title: str, body: str | None, head: str, head_owner: str,
        base: str, draft: bool, author: str, maintainer_can_modify: bool,
        head_sha: str | None = None,
    ) -> dict[str, Any]:
        number = repo.next_number()
        now = _now()
        pull: dict[str, Any] = {
            "number": number,
            "id": next(self._ids),
            "title": title,
            "body": body,
            "head": head,
            "head_owner": head_owner,
            "base": base,
            "state": "open",
            "draft": draft,
            "author": author,
            "maintainer_can_modify": maintainer_can_modify,
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "head_sha": head_sha or _sha(f"{repo.full_name}:{head}"),
        }
        repo.pulls[number] = pull
        self._head_sha(repo, pull)  # a linked git dir's branch wins over the made-up sha
        repo.commits.add(pull["head_sha"])
        return pull

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

    def _page(
        self, request: Request, items: list[dict[str, Any]], key: str | None = None
    ) -> Response:
        """One page of ``items`` with GitHub's Link header (per_page default 30, at most 100);
        with ``key`` the page is ``{"total_count": ..., key: [...]}`` (as check runs are)."""
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
        chunk = items[(page - 1) * per_page : page * per_page]
        return _json(200, {"total_count": len(items), key: chunk} if key else chunk, headers)

