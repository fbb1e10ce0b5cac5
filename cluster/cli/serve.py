"""The ``serve`` subcommand: the dashboard, its JSON API and fleet metrics over one state repo."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from cluster.cli.client import open_client
from cluster.cli.serving import add_limit_flags, limits_from, positive, stop_on_signals

COMMAND = "serve"  # its work dir under $CLUSTER_WORKDIR (a mirror of a remote state repo)
DEFAULT_PORT = 8090


def build_server(state: str, bind: str, port: int, token_file: Path | None,
                 refresh: float, limits: Any = None) -> Any:
    """A ServeServer for the state repo at ``state``, not yet serving; a non-loopback
    ``bind`` without a token is refused before the repo is even opened."""
    from cluster.serve.app import App
    from cluster.serve.auth import Gate, find_token, require_token
    from cluster.serve.server import ServeServer
    from cluster.serve.state import Fleet

    token = find_token(token_file)
    require_token(bind, token)
    client = open_client(state, COMMAND, COMMAND)
    try:
        fleet = Fleet(client, refresh)
        server = ServeServer(App(fleet, Gate(token)), bind, port, limits)
    except BaseException:
        client.close()
        raise
    fleet.start()
    return server


def serve_until_stopped(server: Any, stop: threading.Event) -> None:
    """Serve in a thread until ``stop`` is set; then stop the streams, the socket, the client."""
    gate = server.app.gate
    print(f"serving {server.app.fleet.url} on {server.url} (read-only; "
          f"{'a token is required' if gate.token is not None else 'no token: loopback only'}"
          f"; /health is open)", flush=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        server.app.fleet.close()


def cmd_serve(args: argparse.Namespace) -> int:
    limits = limits_from(args)
    server = build_server(args.state, args.bind, args.port,
                          Path(args.token_file) if args.token_file else None, args.refresh,
                          limits)
    serve_until_stopped(server, stop_on_signals())
    return 0


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``claude-cluster`` parser."""
    serve = subparsers.add_parser(
        "serve", help="the dashboard, a JSON API and fleet metrics over the state repo "
                      "(read-only)")
    serve.add_argument("--state", required=True, help="state repo URL or path")
    serve.add_argument("--bind", default="127.0.0.1",
                       help="address to listen on; anything but loopback needs a token")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    serve.add_argument("--token-file", help="the bearer token, mode 0600 "
                                            "(default: $CLUSTER_SERVE_TOKEN)")
    serve.add_argument("--refresh", type=positive(float), default=2.0, metavar="SECONDS",
                       help="re-read the state repo at most this often (default 2)")
    add_limit_flags(serve)
    serve.set_defaults(func=cmd_serve)
