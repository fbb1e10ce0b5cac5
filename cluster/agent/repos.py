"""Which repos a task may name, and which host a forge's token may go to (docs/security.md).

A task's ``repo`` is hostile text. It is checked before anything is cloned: remote helpers
(``ext::``, ``fd::``) and unknown transports never pass; local paths and ``file://`` only on
an agent with ``allow_local_repos``; with a forge that has a host (GitHub) a URL must be on
that host; without one (the local forge) it must start with one of ``allowed_repo_prefixes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cluster.agent.forge import is_slug
from cluster.state.gitcmd import LOOPBACK

_HELPER = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")  # git's <transport>::<address>
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"^(?:[^@/:]+@)?(\[[^\]/]+\]|[^@/:\[]+):")  # git's [user@]host:path
SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class RepoPolicy:
    """The agent's settings ``allow_local_repos`` and ``allowed_repo_prefixes``."""

    allow_local: bool = False
    prefixes: tuple[str, ...] = ()


def kind_of(repo: str) -> str:
    """``slug``, ``local``, ``https``, ``http``, ``ssh``, or the refused transport's name."""
    if is_slug(repo):
        return "slug"
    helper = _HELPER.match(repo)
    if helper:
        return helper.group(1).lower()
    scheme = _SCHEME.match(repo)
    if scheme:
        name = scheme.group(1).lower()
        return "local" if name == "file" else "ssh" if name in SSH_SCHEMES else name
    return "ssh" if _SCP.match(repo) else "local"


def host_of(url: str) -> str | None:
    """``host`` (``host:port`` for a non-default http(s) port), lower-cased; None: no host."""
    kind = kind_of(url)
    if kind == "ssh" and not _SCHEME.match(url):
        match = _SCP.match(url)
        return match.group(1).lower() if match else None
    if kind not in ("https", "http", "ssh"):
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, bracketed as in a URL
    if kind == "ssh" or port is None or port == DEFAULT_PORTS.get(kind):
        return host
    return f"{host}:{port}"


def forge_host(base_url: str) -> str | None:
    """Where a forge's git lives, from its API URL: ``github.com`` for api.github.com, the
    enterprise host for ``https://HOST/api/v3``."""
    host = host_of(base_url)
    return "github.com" if host == "api.github.com" else host


def refusal(repo: str, policy: RepoPolicy, own_host: str | None) -> str | None:
    """Why this agent will not touch ``repo`` (None: it may). ``own_host``: the forge's host,
    whose URLs (and no others) a forge with a host accepts."""
    kind = kind_of(repo)
    if kind == "slug":
        return None
    if repo.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in repo):
        return "not a repository name or URL"
    if kind == "local":
        return None if policy.allow_local else (
            "a local path or file:// repo needs allow_local_repos on this agent")
    if kind not in ("https", "http", "ssh"):
        return f"transport {kind!r} is never allowed"
    host = host_of(repo)
    path = urlsplit(repo).path if _SCHEME.match(repo) else repo.split(":", 1)[-1]
    if host is None or ".." in path.split("/"):
        return "not a repository URL this agent understands"
    if kind == "http" and _name(host) not in LOOPBACK:
        return "plain http is allowed to a loopback address only"
    if own_host is not None:
        if host == own_host or (kind == "ssh" and host == _name(own_host)):
            return None
        return f"not on this agent's forge ({own_host}): give owner/name or a URL there"
    if any(_under(repo, prefix) for prefix in policy.prefixes):
        return None
    return "not under any of this agent's allowed_repo_prefixes"


def token_goes_to(url: str, own_host: str | None) -> bool:
    """Whether a forge's token may be sent with requests to ``url``: https (or http to a
    loopback address) on the forge's own host, never anywhere else."""
    kind = kind_of(url)
    if own_host is None or kind not in ("https", "http") or "@" in urlsplit(url).netloc:
        return False
    host = host_of(url)
    if kind == "http" and _name(host or "") not in LOOPBACK:
        return False
    return host == own_host


def _name(host: str) -> str:
    """The host name or address of ``host[:port]`` (IPv6 unbracketed)."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0]


def _under(repo: str, prefix: str) -> bool:
    """A prefix ends at a path boundary: ``https://h/team`` admits ``https://h/team/x``, not
    ``https://h/teamx`` nor ``https://h/team.evil.com/x``."""
    if not prefix:
        return False
    if prefix.endswith(("/", ":")):
        return repo.startswith(prefix)
    return repo == prefix or repo.startswith(prefix + "/")
