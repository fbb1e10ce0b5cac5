"""The state session's frames: a JSON header and the raw bodies of the objects it lists.

A frame is two big-endian 32-bit lengths (header, bodies), the header (a JSON object; its
``objects`` a list of ``[id, kind, size]``) and the bodies one after another. Anything else,
a length over the limits, sizes that do not add up, is :class:`WireError`: the reader drops
the session and nothing of the frame is used.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Protocol

from cluster.state.gitobj import OBJECT_ID
from cluster.state.objsync import KINDS, Obj

PROTOCOL = 1
MAX_HEADER = 4 * 1024 * 1024  # a fold names a few thousand refs
MAX_BODIES = 64 * 1024 * 1024
MAX_OBJECTS = 4096  # more than this and git's own transport carries it (objsync.TooMuch)
_LENGTHS = struct.Struct(">II")


class Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...


class WireError(Exception):
    """A frame that is not one (or a stream that ended inside one)."""


def encode(header: dict[str, Any], objects: Sequence[Obj] = ()) -> bytes:
    head = json.dumps({**header, "objects": [[s, k, len(b)] for s, k, b in objects]},
                      separators=(",", ":")).encode()
    bodies = b"".join(body for _, _, body in objects)
    return _LENGTHS.pack(len(head), len(bodies)) + head + bodies


def read_frame(stream: Stream) -> tuple[dict[str, Any], list[Obj]] | None:
    """The next frame of ``stream``; None at its end (between frames)."""
    lengths = stream.read(_LENGTHS.size)
    if not lengths:
        return None
    if len(lengths) != _LENGTHS.size:
        raise WireError("the stream ended inside a frame's lengths")
    head_size, bodies_size = _LENGTHS.unpack(lengths)
    if head_size > MAX_HEADER or bodies_size > MAX_BODIES:
        raise WireError(f"a frame of {head_size} + {bodies_size} bytes is over the limits")
    head = _exactly(stream, head_size)
    bodies = _exactly(stream, bodies_size)
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise WireError(f"the header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireError("the header is not a JSON object")
    return header, _objects(header.pop("objects", []), bodies)


def _exactly(stream: Stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise WireError(f"the stream ended {size - len(data)} bytes short of a frame")
    return data


def _objects(listed: object, bodies: bytes) -> list[Obj]:
    if not isinstance(listed, list) or len(listed) > MAX_OBJECTS:
        raise WireError(f"objects must be a list of at most {MAX_OBJECTS}")
    out: list[Obj] = []
    pos = 0
    for item in listed:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and OBJECT_ID.fullmatch(item[0]) and item[1] in KINDS
                and isinstance(item[2], int) and not isinstance(item[2], bool)
                and 0 <= item[2] <= len(bodies) - pos):
            raise WireError(f"not an object entry, or past the bodies: {str(item)[:100]}")
        out.append((item[0], item[1], bodies[pos:pos + item[2]]))
        pos += item[2]
    if pos != len(bodies):
        raise WireError(f"{len(bodies) - pos} bytes of bodies no entry lists")
    return out
