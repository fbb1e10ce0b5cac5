"""What the CLI's long-running servers (``webhook serve``, ``serve``) share: positive-number
flags, the HTTP limit flags as :class:`cluster.httpserve.Limits`, and stopping on signals."""

from __future__ import annotations

import argparse
import math
import signal
import threading
from dataclasses import replace
from typing import Any


def positive(kind: type[int] | type[float]) -> Any:
    """An argparse ``type``: a positive (and finite) ``kind``, else a usage error."""
    noun = "integer" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive {noun}, got {text!r}") from None
        if not 0 < value < math.inf:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be a positive {noun}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def add_limit_flags(parser: argparse.ArgumentParser, *, body: bool = False) -> None:
    """``--request-seconds``, ``--max-connections`` and, with ``body``, ``--max-body-bytes``."""
    if body:
        parser.add_argument("--max-body-bytes", type=positive(int), metavar="BYTES",
                            help="a longer Content-Length is 413 (default 5242880, 5 MiB)")
    parser.add_argument("--request-seconds", type=positive(float), metavar="SECONDS",
                        help="for one request, or an idle keep-alive (default 10)")
    parser.add_argument("--max-connections", type=positive(int), metavar="N",
                        help="open at once; one more is answered 503 (default 32)")


def limits_from(args: argparse.Namespace) -> Any:
    """The servers' Limits, with what the limit flags say in place of its defaults."""
    from cluster.httpserve import Limits

    given = {"max_body": getattr(args, "max_body_bytes", None),
             "request_seconds": args.request_seconds, "max_connections": args.max_connections}
    return replace(Limits(), **{k: v for k, v in given.items() if v is not None})


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: a server's cue to stop."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
