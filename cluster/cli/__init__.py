"""claude-cluster: state repos, tasks, status, history checks, agents, issue intake."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.cli.client import state_client
from cluster.errors import ClusterError, ValidationError

if TYPE_CHECKING:
    from cluster.state.client import StateClient


WIDE = "print tables at full width, never cutting a cell (the default off a terminal)"


def _state(url: str) -> AbstractContextManager[StateClient]:
    """The operator's client of the state repo at ``url``, closed when the block ends."""
    return state_client(url, "cli", "operator", getpass.getuser())


def _emit(args: argparse.Namespace, data: Any, human: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        human()


def cmd_state_init(args: argparse.Namespace) -> int:
    from cluster.state.init import init_state_repo

    hooks = Path(args.hooks) if args.hooks else _default_hooks()
    commit = init_state_repo(Path(args.path).expanduser().resolve(), hooks=hooks)
    print(f"initialised state repo {args.path} (main at {commit[:12]})")
    return 0


def cmd_state_judge(args: argparse.Namespace) -> int:
    from cluster.cli.serving import stop_on_signals
    from cluster.hooks.judged import serving, socket_path

    stop = stop_on_signals()
    with serving(Path(args.repo).expanduser()) as server:
        print(f"judging pushes to {server.git_dir} at {socket_path(server.git_dir)}",
              flush=True)
        while not server.stale.is_set() and not stop.wait(0.5):
            pass
    if server.stale.is_set() and not stop.is_set():
        print("the rules changed on disk: stopped (start the server again)", file=sys.stderr)
        return 3
    return 0


def _default_hooks() -> Path | None:
    candidate = Path(__file__).resolve().parents[2] / "hooks"
    return candidate if (candidate / "pre-receive").exists() else None


def cmd_task_submit(args: argparse.Namespace) -> int:
    from cluster.state.submit import submit

    with _state(args.state) as client:
        commit, ids = submit(client, [Path(p) for p in args.files])
    _emit(args, {"commit": commit, "submitted": ids},
          lambda: print(f"submitted {len(ids)} task(s) in {commit[:12]}: {', '.join(ids)}"))
    return 0


def cmd_task_list(args: argparse.Namespace) -> int:
    from cluster.cli.render import print_tables, task_table
    from cluster.state.report import task_rows

    with _state(args.state) as client:
        rows = task_rows(client.snapshot())
    if args.filter_state:
        rows = [r for r in rows if r["state"] == args.filter_state]
    _emit(args, rows, lambda: print_tables([task_table(rows)], wide=args.wide))
    return 0


def cmd_task_show(args: argparse.Namespace) -> int:
    import time

    from cluster.state.report import task_row

    with _state(args.state) as client:
        snap = client.snapshot()
        if not snap.known(args.id):
            raise ClusterError(f"task {args.id!r} is not in the state repo {args.state}")
        row = task_row(snap, args.id, time.time())
        task = snap.tasks.get(args.id)
        text = client.remote.store.blob(task.blob).decode("utf-8", "replace") if task else None
    data = {**row, "file": text}

    def human() -> None:
        for name, value in row.items():
            print(f"{name:>14}: {value}")
        if text:
            print("\n" + text)

    _emit(args, data, human)
    return 0


def cmd_task_cancel(args: argparse.Namespace) -> int:
    from cluster.state.submit import cancel

    with _state(args.state) as client:
        result = cancel(client, args.id, args.reason)
    _emit(args, {"id": args.id, "status": result.status, "reason": result.reason},
          lambda: print(f"cancelled {args.id}"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cluster.cli.render import print_tables, status_tables
    from cluster.state.report import status

    with _state(args.state) as client:
        report = status(client.snapshot())
    _emit(args, report, lambda: print_tables(status_tables(report), wide=args.wide))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import tempfile

    from cluster.state.checker import check
    from cluster.state.gitcmd import run_git
    from cluster.state.remote import local_path

    path = local_path(args.state)
    with tempfile.TemporaryDirectory(prefix="claude-cluster-check-") as scratch:
        if path is None:  # a URL: read its whole history from a mirror clone
            path = Path(scratch) / "state.git"
            run_git(["clone", "--quiet", "--mirror", args.state, str(path)])
        elif not (path / "HEAD").exists():
            raise ClusterError(f"state remote {args.state} does not exist")
        report = check(path)
    summary = report.summary()
    problems = {k: {"verdict": v, "detail": d} for k, (v, d) in report.problems().items()}
    if args.json:
        print(json.dumps({**summary, "problems": problems}, indent=2))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
        for key, item in sorted(problems.items()):
            print(f"  {key}: {item['verdict']}: {item['detail']}")
    bad = summary["duplicated"] + summary["stale"] + (summary["lost"] if args.strict else 0)
    return 1 if bad else 0


def cmd_agent_run(args: argparse.Namespace) -> int:
    from cluster.agent.build import agent_home, build_runner
    from cluster.agent.config import load_agent_config
    from cluster.agent.events import EventLog, setup_logging
    from cluster.agent.instance import hold
    from cluster.agent.loop import Agent
    from cluster.state.client import Identity, StateClient

    setup_logging(args.log_level, json_lines=args.log_json)
    flags = {
        "state": args.state, "id": args.id, "specialties": args.specialty,
        "max_tasks": args.max_tasks, "exit_when_idle": args.exit_when_idle or None,
        "lease_seconds": args.lease, "heartbeat_seconds": args.heartbeat,
        "poll_seconds": args.poll, "events_path": args.events, "workdir": args.workdir,
        "stop_grace_seconds": args.stop_grace, "runner": args.runner,
        "executors": args.executors, "forge": args.forge,
        "anthropic_base_url": args.anthropic_base_url, "github_base_url": args.github_base_url,
        "secrets_file": args.secrets_file, "repos_root": args.repos_root,
        "pull_request_dir": args.pull_request_dir, "model": args.model,
        "allow_local_repos": args.allow_local_repos or None,
        "metrics_port": args.metrics_port, "sandbox": args.sandbox,
    }
    config = load_agent_config(Path(args.config) if args.config else None, flags)
    instance = hold(agent_home(config), config.id)  # before anything is written under it
    runner = build_runner(config)  # a missing key or token fails here, before any claim
    events = EventLog(config.id, config.events_path, runner.secrets)  # masked in every line
    client = StateClient(config.state, config.workdir / config.id, Identity(config.id))
    agent = Agent(config, runner, events, client)
    agent.prepare()
    agent.install_signal_handlers()
    with instance:
        return agent.run()


def cmd_agent_health(args: argparse.Namespace) -> int:
    import os
    import time

    from cluster.agent.healthcheck import check

    port = args.port or int(os.environ.get("CLUSTER_AGENT_METRICS_PORT") or 0)
    if not port:
        print("error: no metrics port: give --port or set CLUSTER_AGENT_METRICS_PORT",
              file=sys.stderr)
        return 2
    health = check(port, time.time())
    print(f"{'healthy' if health.healthy else 'unhealthy'}: {health.reason}")
    return 0 if health.healthy else 1


def cmd_sandbox_check(args: argparse.Namespace) -> int:
    import tempfile

    from cluster.agent.config import SandboxConfig, read_config_file
    from cluster.sandbox.sandboxes import default_sandboxes

    config = SandboxConfig()
    if args.config:
        config = SandboxConfig.of(read_config_file(Path(args.config)).get("sandbox"))
    if config.mode == "off":
        print("sandbox: off (task code runs unsealed)")
        return 1
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="sandbox-check-") as home:
        default_sandboxes(Path(home), config).check()
    print("sandbox: sealed (bwrap: own user, PID, network and mount namespaces)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    state = sub.add_parser("state", help="manage state repos").add_subparsers(
        dest="state_command", required=True)
    init = state.add_parser("init", help="create a bare state repo with its layout and hooks")
    init.add_argument("path")
    init.add_argument("--hooks", help="directory of server hooks to install")
    init.set_defaults(func=cmd_state_init)
    judge = state.add_parser(
        "judge", help="keep the pre-receive rules warm for a bare state repo's hook "
                      "(one per repo, run as its owner; the hook works without it)")
    judge.add_argument("--repo", required=True, help="path of the bare state repo")
    judge.set_defaults(func=cmd_state_judge)

    task = sub.add_parser("task", help="submit, list, show and cancel tasks").add_subparsers(
        dest="task_command", required=True)
    for name, func, helptext in (
        ("submit", cmd_task_submit, "validate task files, then commit and push them"),
        ("list", cmd_task_list, "list tasks and their states"),
        ("show", cmd_task_show, "show one task, its state and its file"),
        ("cancel", cmd_task_cancel, "end a task as cancelled (fences off its holder)"),
    ):
        cmd = task.add_parser(name, help=helptext)
        cmd.add_argument("--state", required=True, help="state repo URL or path")
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(func=func)
        if name == "submit":
            cmd.add_argument("files", nargs="+", metavar="FILE")
        elif name == "list":
            cmd.add_argument("--filter-state", metavar="STATE")
            cmd.add_argument("--wide", action="store_true", help=WIDE)
        else:
            cmd.add_argument("id")
        if name == "cancel":
            cmd.add_argument("--reason", default="cancelled by the operator")

    stat = sub.add_parser("status", help="agents and tasks at a glance")
    stat.add_argument("--state", required=True)
    stat.add_argument("--json", action="store_true")
    stat.add_argument("--wide", action="store_true", help=WIDE)
    stat.set_defaults(func=cmd_status)

    chk = sub.add_parser("check", help="classify every task from the state repo's history")
    chk.add_argument("--state", required=True)
    chk.add_argument("--json", action="store_true")
    chk.add_argument("--strict", action="store_true",
                     help="count tasks without a result as a failure (for a drained cluster)")
    chk.set_defaults(func=cmd_check)

    agent = sub.add_parser("agent", help="run an agent").add_subparsers(
        dest="agent_command", required=True)
    run = agent.add_parser("run", help="claim and run tasks until stopped")
    run.add_argument("--config", help="agent.yaml (flags override it)")
    run.add_argument("--state")
    run.add_argument("--id")
    run.add_argument("--specialty", help="comma-separated specialties served")
    run.add_argument("--max-tasks", type=int)
    run.add_argument("--exit-when-idle", action="store_true")
    run.add_argument("--lease", type=float, help="lease seconds (default: the repo's)")
    run.add_argument("--heartbeat", type=float, help="heartbeat seconds (default: the repo's)")
    run.add_argument("--poll", type=float, help="fallback re-read interval in seconds")
    run.add_argument("--events", help="append JSON-lines events to this file")
    run.add_argument("--stop-grace", type=float,
                     help="seconds to finish held tasks after SIGTERM before releasing them")
    run.add_argument("--workdir", help="mirror, workspaces and logs live here")
    run.add_argument("--runner", choices=("repo", "scratch"),
                     help="repo: clone, branch, verify, push, pull request (default); "
                          "scratch: run command tasks in an empty directory")
    run.add_argument("--executors", help="comma-separated: claude, claude-code, command")
    run.add_argument("--model", help="Claude model for the claude executors")
    run.add_argument("--forge", choices=("local", "github"))
    run.add_argument("--anthropic-base-url")
    run.add_argument("--github-base-url")
    run.add_argument("--secrets-file", help="KEY=VALUE file, mode 0600 (ANTHROPIC_API_KEY...)")
    run.add_argument("--repos-root", help="local forge: where owner/name repos live")
    run.add_argument("--pull-request-dir", help="local forge: where pull requests are recorded")
    run.add_argument("--allow-local-repos", action="store_true",
                     help="let tasks name a local path or file:// repo (local runs, tests)")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    run.add_argument("--sandbox", choices=("bwrap", "off"),
                     help="bwrap (default): every task process sealed; off: unsealed, said in "
                          "every attempt's log and in health")
    run.add_argument("--log-level", default="INFO")
    run.add_argument("--log-json", action="store_true")
    run.set_defaults(func=cmd_agent_run)
    health = agent.add_parser("health", help="exit 0 when the agent's last heartbeat is fresh "
                                             "and it is not blocked (reads its metrics port)")
    health.add_argument("--port", type=int, help="its metrics_port (default: "
                                                 "$CLUSTER_AGENT_METRICS_PORT)")
    health.set_defaults(func=cmd_agent_health)

    sandbox = sub.add_parser("sandbox", help="the sandbox task code runs in").add_subparsers(
        dest="sandbox_command", required=True)
    probe = sandbox.add_parser("check", help="build a jail as an agent would and try it")
    probe.add_argument("--config", help="agent.yaml whose sandbox settings to try")
    probe.add_argument("--workdir", help="the agent's work dir (default: a temporary one)")
    probe.set_defaults(func=cmd_sandbox_check)

    from cluster.cli.intake import register as register_intake
    from cluster.cli.serve import register as register_serve

    register_intake(sub)
    register_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValidationError as exc:
        print(f"error: {exc.where}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return exc.exit_code
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
