"""Labelled GitHub issues, polled through PyGithub (the forge's client) or read from a webhook."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cluster.agent.forge import ForgeError
from cluster.agent.forge_github import GitHubForge

REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Issue:
    repo: str
    number: int
    title: str
    url: str
    labels: tuple[str, ...]


class IssueFeed(GitHubForge):
    """The GitHub forge plus what intake needs: open issues carrying a label, and the
    login its token acts as (whose comments are the agents' own)."""

    def login(self) -> str:
        with self._translated("the token's user"):
            return str(self._gh.get_user().login)

    def labelled(self, repo: str, label: str) -> list[Issue]:
        with self._translated(f"{repo}: issues labelled {label!r}"):
            found = self._repo(repo).get_issues(state="open", labels=[label])
            return [
                Issue(repo, int(item.number), str(item.title or ""), str(item.html_url),
                      tuple(str(lab.name) for lab in item.labels))
                for item in found
                if item.pull_request is None  # the issues API lists pull requests too
            ]


def issue_from_event(payload: dict[str, Any]) -> Issue:
    """The issue of a GitHub ``issues`` webhook payload; ForgeError when it is not one."""
    try:
        issue, repo = payload["issue"], payload["repository"]["full_name"]
        labels = tuple(str(item["name"]) for item in issue.get("labels") or [])
        return Issue(str(repo), int(issue["number"]), str(issue.get("title") or ""),
                     str(issue["html_url"]), labels)
    except (KeyError, TypeError, ValueError) as exc:
        raise ForgeError(f"not an issues event payload: missing or wrong {exc}") from exc


def shape_problem(payload: Any) -> str | None:
    """Why ``payload`` is not an ``issues`` event ``issue_from_event`` can read; None if it is."""
    if not isinstance(payload, dict):
        return f"the payload is a JSON {type(payload).__name__}, not an object"
    issue, repo, label = payload.get("issue"), payload.get("repository"), payload.get("label")
    if not isinstance(issue, dict):
        return "'issue' is missing or not an object"
    if not isinstance(repo, dict) or not isinstance(repo.get("full_name"), str) \
            or not REPO_NAME.fullmatch(repo["full_name"]):
        return "'repository.full_name' is missing or not owner/name"
    number = issue.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**53:
        return "'issue.number' is missing or not a positive integer"
    if not isinstance(issue.get("html_url"), str) or not isinstance(issue.get("title"), str):
        return "'issue.html_url' or 'issue.title' is missing or not a string"
    labels = issue.get("labels") or []
    if not isinstance(labels, list) or not all(
            isinstance(item, dict) and isinstance(item.get("name"), str) for item in labels):
        return "'issue.labels' is not a list of objects with a string 'name'"
    if label is not None and not isinstance(label, dict):
        return "'label' is not an object"
    return None
