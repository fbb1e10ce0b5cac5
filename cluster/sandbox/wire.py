"""HTTP/1.1 plumbing of the broker: which headers go on, one request per connection, a tunnel."""

from __future__ import annotations

import http.client
import selectors
import socket
import ssl
from email.message import Message

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = frozenset({"host", "content-length", "expect", "accept-encoding"})
CHUNK = 65536


def connection(
    scheme: str, host: str, port: int | None, timeout: float
) -> http.client.HTTPConnection:
    """A connection, not yet opened, to ``host``; https verified against the system's CAs."""
    if scheme == "https":
        return http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    return http.client.HTTPConnection(host, port, timeout=timeout)


def send(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> http.client.HTTPResponse:
    """One request on a fresh connection that the response owns (closing it closes the socket)."""
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("connection", "close")
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body or None)
        return conn.getresponse()
    except BaseException:
        conn.close()
        raise


def forwarded(incoming: Message, *, strip_auth: bool) -> list[tuple[str, str]]:
    """The incoming headers that go on: no hop-by-hop ones, no auth of the client's own."""
    named = {
        token.strip().lower()
        for value in incoming.get_all("connection", [])
        for token in value.split(",")
    }
    kept = []
    for name, value in incoming.items():
        low = name.lower()
        if low in HOP_BY_HOP or low in named or low in _NOT_FORWARDED:
            continue
        if strip_auth and (
            low == "cookie" or any(word in low for word in ("auth", "api-key", "apikey", "token"))
        ):
            continue
        kept.append((name, value))
    return kept


def splice(client: socket.socket, upstream: socket.socket, early: bytes, idle: float) -> None:
    """Copy bytes both ways (``early`` first, to upstream) until both sides end or nothing moves
    for ``idle`` seconds; a socket error ends it too."""
    peers = {client: upstream, upstream: client}
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        try:
            if early:
                upstream.sendall(early)
            while selector.get_map():
                ready = selector.select(idle)
                if not ready:
                    return
                for key, _ in ready:
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(CHUNK)
                    if data:
                        peers[source].sendall(data)
                    else:
                        selector.unregister(source)
                        peers[source].shutdown(socket.SHUT_WR)
        except OSError:
            return
