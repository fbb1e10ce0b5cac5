"""Labelled GitHub issues, polled through PyGithub (the forge's client) or read from a webhook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.agent.forge import ForgeError
from cluster.agent.forge_github import GitHubForge


@dataclass(frozen=True)
class Issue:
    repo: str
    number: int
    title: str
    url: str
    labels: tuple[str, ...]


class IssueFeed(GitHubForge):
    """The GitHub forge plus the one call intake needs: open issues carrying a label."""

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
