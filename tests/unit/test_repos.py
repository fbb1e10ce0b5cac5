"""Which repos a task may name, and where a forge's token may go."""

from __future__ import annotations

import pytest

from cluster.agent.forge_github import GitHubForge
from cluster.agent.repos import RepoPolicy, forge_host, host_of, refusal, token_goes_to
from cluster.secret import Secret
from tests.unit.test_forges import NO_THROTTLE

PREFIXES = RepoPolicy(prefixes=("https://git.corp/team", "ssh://git@10.0.0.5/srv/"))


@pytest.mark.parametrize(("repo", "why"), [
    ("octo/calc", None),
    ("https://git.corp/team/x.git", None),
    ("https://git.corp/team", None),
    ("ssh://git@10.0.0.5/srv/x.git", None),
    ("https://git.corp/teamx/y", "allowed_repo_prefixes"),
    ("https://git.corp.evil.example/team/x", "allowed_repo_prefixes"),
    ("https://git.corp/team/../other/x", "understands"),
    ("git@10.0.0.5:srv/x.git", "allowed_repo_prefixes"),
    ("/srv/x.git", "allow_local_repos"),
    ("file:///srv/x.git", "allow_local_repos"),
    ("ext::sh -c touch% /tmp/x", "'ext' is never allowed"),
    ("fd::7", "'fd' is never allowed"),
    ("git://git.corp/team/x", "'git' is never allowed"),
    ("http://git.corp/team/x", "loopback address only"),
    ("-uevil", "not a repository"),
    ("https://git.corp/team/x\nmore", "not a repository"),
])
def test_local_forge_policy(repo: str, why: str | None) -> None:
    got = refusal(repo, PREFIXES, None)
    assert (got is None) if why is None else (got is not None and why in got), got


def test_a_forge_with_a_host_takes_its_own_urls_only() -> None:
    policy = RepoPolicy(allow_local=True, prefixes=("https://elsewhere.example/",))
    assert refusal("https://github.com/o/r.git", policy, "github.com") is None
    assert refusal("git@github.com:o/r.git", policy, "github.com") is None
    assert refusal("https://github.com:443/o/r", policy, "github.com") is None
    for other in ("https://elsewhere.example/o/r", "https://github.com.evil.example/o/r",
                  "https://github.com:8443/o/r", "http://127.0.0.1:9/o/r"):
        assert "not on this agent's forge" in (refusal(other, policy, "github.com") or ""), other


def test_hosts_and_where_tokens_go() -> None:
    assert forge_host("https://api.github.com") == "github.com"
    assert forge_host("https://ghe.corp/api/v3") == "ghe.corp"
    assert forge_host("http://127.0.0.1:8080/api/v3") == "127.0.0.1:8080"
    assert host_of("git@GitHub.com:o/r.git") == "github.com"
    assert host_of("http://[::1]:80/x") == "[::1]"
    assert token_goes_to("https://github.com/o/r.git", "github.com")
    assert token_goes_to("http://127.0.0.1:8080/o/r.git", "127.0.0.1:8080")
    for url, host in (("https://evil.example/o/r", "github.com"),
                      ("ssh://github.com/o/r", "github.com"), ("http://ghe.corp/o/r", "ghe.corp"),
                      ("https://u:p@github.com/o/r", "github.com"), ("/srv/o/r.git", "github.com"),
                      ("https://github.com/o/r", None)):
        assert not token_goes_to(url, host), url


def test_github_forge_knows_its_host_and_its_urls() -> None:
    forge = GitHubForge(Secret("ghp_" + "x" * 36), base_url="https://ghe.corp/api/v3",
                        **NO_THROTTLE)
    assert forge.host == "ghe.corp"
    assert forge._slug("https://ghe.corp/octo/calc.git") == "octo/calc"
    other = "https://other.example/octo/calc.git"
    assert forge._slug(other) == other
