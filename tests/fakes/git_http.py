"""Git's smart HTTP, served by the real ``git http-backend`` (as CGI) behind a token check:
what a forge's clone URL answers. Used by the GitHub stand-in and the workspace tests."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from tests.fakes import Request, Response

CGI_TIMEOUT = 120.0


def basic_auth(token: str, user: str = "x-access-token") -> str:
    """The ``Authorization`` value git sends for ``user:token`` (how GitHub takes a token)."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def token_of(authorization: str) -> str | None:
    """The password of a Basic ``Authorization`` value (GitHub ignores the user name)."""
    scheme, _, blob = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(blob, validate=True).decode().partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return None


def unauthorized() -> Response:
    return Response(401, b"", {"www-authenticate": 'Basic realm="git"'})


def http_backend(root: Path, path_info: str, request: Request) -> Response:
    """``git http-backend`` for ``root``/``path_info`` (``/repo.git/info/refs`` and so on)."""
    query = "&".join(f"{k}={v}" for k, values in request.query.items() for v in values)
    env = {
        "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info, "QUERY_STRING": query, "REQUEST_METHOD": request.method,
        "REMOTE_USER": "agent", "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(request.body)),
        "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
        "GIT_PROTOCOL": request.headers.get("git-protocol", ""),
    }
    out = subprocess.run(["git", "http-backend"], input=request.body, env=env,
                         capture_output=True, check=True, timeout=CGI_TIMEOUT).stdout
    head, payload = cgi_split(out)
    status, headers = 200, {}
    for line in head.decode().splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers[name.lower()] = value.strip()
    return Response(status, payload, headers)


def cgi_split(out: bytes) -> tuple[bytes, bytes]:
    """A CGI answer's header block and its body, split at the first blank line (CRLF or LF).
    The body (a pack) is binary: its bytes are never touched, though they may hold a CRLF."""
    ends = [(at, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (at := out.find(sep)) >= 0]
    if not ends:
        return out, b""
    at, size = min(ends)
    return out[:at], out[at + size:]
