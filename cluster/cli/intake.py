"""The ``intake`` and ``webhook serve`` subcommands: labelled GitHub issues, and reviews,
comments and failed checks on the agents' pull requests, become tasks."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from cluster.cli.client import open_client, work_dir
from cluster.cli.serving import add_limit_flags, limits_from, stop_on_signals
from cluster.errors import ConfigError

DEFAULT_INTERVAL = 60.0
COMMAND = "intake"  # its work dir under $CLUSTER_WORKDIR, and who it commits as by default


def _policy(args: argparse.Namespace) -> Any:
    """The issue intake's Policy, or None when only follow-ups are asked for."""
    from cluster.intake.taskdoc import Policy

    if args.label is None:
        if not args.follow_ups:
            raise ConfigError("give --label (issue intake), --follow-ups, or both")
        if args.specialty or args.specialty_from_label:
            raise ConfigError("--specialty and --specialty-from-label need --label")
        return None
    if not args.specialty and not args.specialty_from_label:
        raise ConfigError("give --specialty, --specialty-from-label or both")
    return Policy(args.label, args.specialty, args.specialty_from_label)


def _follow_ups(args: argparse.Namespace, feed: Any) -> Any:
    """The FollowUpPolicy of the flags (None without --follow-ups); the agents' own login is
    --bot-login, else the one the token acts as."""
    from cluster.intake.followups import FollowUpPolicy

    if not args.follow_ups:
        return None
    command = " ".join(args.command.split())
    if not command:
        raise ConfigError("--command must not be empty")
    return FollowUpPolicy(command=command, checks=args.checks,
                          allow=frozenset(login.lower() for login in args.allow or ()),
                          polite=args.polite, bot_login=args.bot_login or feed.login())


def _feed(args: argparse.Namespace) -> Any:
    from cluster.intake.issues import IssueFeed

    return IssueFeed(token_file=Path(args.token_file) if args.token_file else None,
                     base_url=args.github_base_url)


def cmd_intake(args: argparse.Namespace) -> int:
    from cluster.intake.filing import Filed
    from cluster.intake.poller import poll_follow_ups, poll_forever, poll_once

    policy = _policy(args)
    feed = _feed(args)
    client = open_client(args.state, COMMAND, COMMAND)
    try:
        follow_ups = _follow_ups(args, feed)

        def one_pass() -> str:
            filed = Filed()
            if policy is not None:
                filed = poll_once(feed, client, args.repo, policy)
            if follow_ups is not None:
                filed = filed.merged(poll_follow_ups(feed, client, args.repo, follow_ups))
            return filed.summary()

        if args.once:
            print(one_pass())
            return 0
        poll_forever(one_pass, args.interval or DEFAULT_INTERVAL, stop_on_signals(),
                     say=lambda line: print(line, flush=True))
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
    feed = _feed(args) if args.follow_ups else None
    try:
        follow_ups = _follow_ups(args, feed)
        client = open_client(args.state, COMMAND, COMMAND)
    except BaseException:
        if feed is not None:
            feed.close()
        raise
    app = WebhookApp(client, policy, secret, DeliveryLog(deliveries),
                     frozenset(r.lower() for r in args.repo or ()), feed, follow_ups)
    server = WebhookServer(app, args.bind, args.port, limits_from(args))
    stop = stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    print(f"listening on {server.url}", flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        client.close()
        if feed is not None:
            feed.close()
    return 0


def _common(cmd: argparse.ArgumentParser) -> None:
    from cluster.intake.followups import DEFAULT_COMMAND

    cmd.add_argument("--state", required=True, help="state repo URL or path")
    cmd.add_argument("--label", help="issues with this label become tasks (issue intake)")
    cmd.add_argument("--specialty", help="the tasks' specialty (fallback with the next flag)")
    cmd.add_argument("--specialty-from-label", action="store_true",
                     help="take the specialty from a 'specialty:<x>' label")
    cmd.add_argument("--github-base-url", default="https://api.github.com")
    cmd.add_argument("--token-file", help="GitHub token file (default: $GITHUB_TOKEN)")
    cmd.add_argument("--follow-ups", action="store_true",
                     help="reviews, comments (and with --checks failed checks) on the agents' "
                          "pull requests become follow-up tasks")
    cmd.add_argument("--command", default=DEFAULT_COMMAND,
                     help=f"what a comment starts a line with to address the agents, maybe "
                          f"followed by a specialty (default {DEFAULT_COMMAND!r})")
    cmd.add_argument("--checks", action="store_true",
                     help="failed check runs and commit statuses on the head trigger too")
    cmd.add_argument("--allow", action="append", metavar="LOGIN",
                     help="may trigger without write access (repeat)")
    cmd.add_argument("--polite", action="store_true",
                     help="answer an author without access once, on the pull request")
    cmd.add_argument("--bot-login", metavar="LOGIN",
                     help="the agents' GitHub login (default: the token's user)")


def register(subparsers: Any) -> None:
    """Add ``intake`` and ``webhook serve`` to the ``claude-cluster`` parser."""
    intake = subparsers.add_parser(
        "intake", help="file labelled GitHub issues and pull-request follow-ups as tasks")
    _common(intake)
    intake.add_argument("--repo", required=True, help="owner/name on GitHub")
    when = intake.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="one pass, then exit")
    when.add_argument("--interval", type=float, metavar="SECONDS",
                      help=f"seconds between passes (default {DEFAULT_INTERVAL:.0f})")
    intake.set_defaults(func=cmd_intake)

    hook = subparsers.add_parser("webhook", help="receive GitHub webhooks").add_subparsers(
        dest="webhook_command", required=True)
    serve = hook.add_parser("serve", help="turn signed deliveries into tasks")
    _common(serve)
    serve.add_argument("--secret-file", required=True, help="the webhook's shared secret")
    serve.add_argument("--repo", action="append", help="serve only this owner/name (repeat)")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--bind", default="127.0.0.1")
    serve.add_argument("--deliveries-file", help="where seen delivery ids are remembered")
    add_limit_flags(serve, body=True)
    serve.set_defaults(func=cmd_webhook_serve)
