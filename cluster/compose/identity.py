"""An agent container's id from its Compose name, asked of Docker's embedded DNS.

Compose names the replicas of a service ``<project>-<service>-<n>``; Docker's DNS server
(127.0.0.11 on every user-defined network) answers a reverse lookup of a container's address
with that name and the network's (``<project>-agent-backend-2.<project>_default``). The
number stays with the replica across restarts, and ``up --scale`` adds the next ones, so
``agent-backend-2`` is a stable, distinct id. ``/etc/hosts`` maps the address to the
container id instead, which is why the system resolver (files first) is not asked.
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
import struct

from cluster.errors import ConfigError

DOCKER_DNS = ("127.0.0.11", 53)
PTR, IN = 12, 1


def own_address() -> str:
    """This container's address on its network: what ``/etc/hosts`` says for its hostname."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError as exc:
        raise ConfigError(f"cannot find this container's address: {exc}") from exc


def ptr_query(address: str, ident: int) -> bytes:
    """A DNS query (recursion desired) for the PTR record of ``address``."""
    labels = ipaddress.ip_address(address).reverse_pointer.split(".")
    name = b"".join(bytes([len(part)]) + part.encode() for part in labels) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", PTR, IN)


def _name(message: bytes, offset: int) -> tuple[str, int]:
    """The (possibly compressed) domain name at ``offset`` and the offset after it."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # a bound on pointer chains: a malformed answer cannot loop
        length = message[offset]
        if length >= 0xC0:
            end = end if end is not None else offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
        elif length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        else:
            labels.append(message[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
    raise ValueError("DNS name too long")


def ptr_answer(message: bytes, ident: int) -> str | None:
    """The first PTR target in a DNS response to query ``ident``, or None."""
    got, flags, questions, answers = struct.unpack("!HHHH", message[:8])
    if got != ident or flags & 0x000F:  # another query's answer, or an error code
        return None
    offset = 12
    for _ in range(questions):
        offset = _name(message, offset)[1] + 4
    for _ in range(answers):
        offset = _name(message, offset)[1]
        kind, _cls, _ttl, size = struct.unpack("!HHIH", message[offset : offset + 10])
        offset += 10
        if kind == PTR:
            return _name(message, offset)[0]
        offset += size
    return None


def reverse_lookup(address: str, server: tuple[str, int] = DOCKER_DNS,
                   timeout: float = 2.0, tries: int = 3) -> str | None:
    """The name ``server`` gives ``address``, or None when it has none or does not answer."""
    for _ in range(tries):
        ident = random.randrange(1 << 16)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(ptr_query(address, ident), server)
                reply, _ = sock.recvfrom(4096)
            except OSError:
                continue
        try:
            return ptr_answer(reply, ident)
        except (ValueError, IndexError, struct.error):
            continue
    return None


def agent_id(container_name: str, service: str) -> str:
    """``<service>-<n>`` from a Compose container name (``<project>-<service>-<n>``, perhaps
    followed by ``.<network>``); ConfigError when the name is not of that form."""
    first = container_name.split(".", 1)[0]
    found = re.fullmatch(rf".+-({re.escape(service)}-\d+)", first)
    if found is None:
        raise ConfigError(f"{container_name!r} is not a replica of service {service!r} "
                          "(expected <project>-<service>-<n>)")  # fmt: skip
    return found[1]
