"""The ``intake`` and ``webhook serve`` subcommands: labelled GitHub issues become tasks."""

from __future__ import annotations

import argparse
import math
import signal
import threading
from pathlib import Path
from typing import Any

from cluster.cli.client import open_client, work_dir
from cluster.errors import ConfigError

DEFAULT_INTERVAL = 60.0
COMMAND = "intake"  # its work dir under $CLUSTER_WORKDIR, and who it commits as by default


def _policy(args: argparse.Namespace) -> Any:
    from cluster.intake.taskdoc import Policy

    if not args.specialty and not args.specialty_from_label:
        raise ConfigError("give --specialty, --specialty-from-label or both")
    return Policy(args.label, args.specialty, args.specialty_from_label)


def _positive(kind: type[int] | type[float]) -> Any:
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


def _limits(args: argparse.Namespace) -> Any:
    """The server's Limits, with what the limit flags say in place of its defaults."""
    from dataclasses import replace

    from cluster.intake.webhook import Limits

    given = {"max_body": args.max_body_bytes, "request_seconds": args.request_seconds,
             "max_connections": args.max_connections}
    return replace(Limits(), **{k: v for k, v in given.items() if v is not None})


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_intake(args: argparse.Namespace) -> int:
    from cluster.intake.issues import IssueFeed
    from cluster.intake.poller import poll_forever, poll_once

    policy = _policy(args)
    feed = IssueFeed(token_file=Path(args.token_file) if args.token_file else None,
                     base_url=args.github_base_url)
    client = open_client(args.state, COMMAND, COMMAND)
    try:
        if args.once:
            print(poll_once(feed, client, args.repo, policy).summary())
            return 0
        poll_forever(feed, client, args.repo, policy, args.interval or DEFAULT_INTERVAL,
                     _stop_on_signals(), say=lambda line: print(line, flush=True))
        return 0
    finally:
        client.close()
        feed.close()


def cmd_webhook_serve(args: argparse.Namespace) -> int:
    from cluster.intake.deliveries import DeliveryLog
    from cluster.intake.webhook import WebhookApp, WebhookServer, read_secret_file

    policy = _policy(args)
    secret = read_secret_file(Path(args.secret_file))
    deliveries = Path(args.deliveries_file) if args.deliveries_file else (
        work_dir(COMMAND) / "webhook-deliveries.txt")
    client = open_client(args.state, COMMAND, COMMAND)
    app = WebhookApp(client, policy, secret, DeliveryLog(deliveries),
                     frozenset(r.lower() for r in args.repo or ()))
    server = WebhookServer(app, args.bind, args.port, _limits(args))
    stop = _stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    print(f"listening on {server.url}", flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        client.close()
    return 0


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--state", required=True, help="state repo URL or path")
    cmd.add_argument("--label", required=True, help="issues with this label become tasks")
    cmd.add_argument("--specialty", help="the tasks' specialty (fallback with the next flag)")
    cmd.add_argument("--specialty-from-label", action="store_true",
                     help="take the specialty from a 'specialty:<x>' label")


def register(subparsers: Any) -> None:
    """Add ``intake`` and ``webhook serve`` to the ``claude-cluster`` parser."""
    intake = subparsers.add_parser("intake", help="file labelled GitHub issues as tasks")
    _common(intake)
    intake.add_argument("--repo", required=True, help="owner/name on GitHub")
    intake.add_argument("--github-base-url", default="https://api.github.com")
    intake.add_argument("--token-file", help="GitHub token file (default: $GITHUB_TOKEN)")
    when = intake.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="one pass, then exit")
    when.add_argument("--interval", type=float, metavar="SECONDS",
                      help=f"seconds between passes (default {DEFAULT_INTERVAL:.0f})")
    intake.set_defaults(func=cmd_intake)

    hook = subparsers.add_parser("webhook", help="receive GitHub webhooks").add_subparsers(
        dest="webhook_command", required=True)
    serve = hook.add_parser("serve", help="turn signed 'issues' deliveries into tasks")
    _common(serve)
    serve.add_argument("--secret-file", required=True, help="the webhook's shared secret")
    serve.add_argument("--repo", action="append", help="serve only this owner/name (repeat)")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--bind", default="127.0.0.1")
    serve.add_argument("--deliveries-file", help="where seen delivery ids are remembered")
    serve.add_argument("--max-body-bytes", type=_positive(int), metavar="BYTES",
                       help="a longer Content-Length is 413 (default 5242880, 5 MiB)")
    serve.add_argument("--request-seconds", type=_positive(float), metavar="SECONDS",
                       help="for one request, or an idle keep-alive (default 10)")
    serve.add_argument("--max-connections", type=_positive(int), metavar="N",
                       help="open at once; one more is answered 503 (default 32)")
    serve.set_defaults(func=cmd_webhook_serve)
