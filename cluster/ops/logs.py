"""logs: the agent's journal (or container log), or one task's attempt logs, optionally followed."""

from __future__ import annotations

import shlex
import sys
from typing import Any, TextIO

from cluster.errors import ClusterError, HostError
from cluster.inventory import HostSpec
from cluster.state.ids import is_safe_id
from cluster.transport.errors import translated
from cluster.units import layout


def task_log_glob(agent: str, task: str) -> str:
    """Where an agent's attempt logs of ``task`` live: ``<workdir>/<id>/logs/<task>-aN.log``."""
    return f"{layout.WORKSPACE}/{agent}/logs/{task}-a*.log"


def logs_argv(spec: HostSpec, task: str | None, follow: bool, lines: int) -> list[str]:
    if task is not None:
        if not is_safe_id(task):
            raise ClusterError(f"logs: {task!r} is not a task id")
        pattern = task_log_glob(spec.name, task)
        tail = f"tail -n +1{' -F' if follow else ''} -v"
        script = (f'set -- {pattern}; [ -e "$1" ] || {{ echo "no log for task {task} '
                  f'({pattern})" >&2; exit 3; }}; exec {tail} "$@"')  # fmt: skip
        return ["sh", "-c", script]
    if spec.runtime == "container":
        return ["docker", "logs", "--tail", str(lines), *(["-f"] if follow else []),
                layout.container_name(spec.name)]  # fmt: skip
    return ["journalctl", "-u", layout.UNIT_NAME, "--no-pager", "-n", str(lines),
            *(["-f"] if follow else [])]  # fmt: skip


def stream(conn: Any, name: str, argv: list[str], out: TextIO = sys.stdout) -> int:
    """Run ``argv`` with its output streamed to ``out`` as it comes; Ctrl-C ends it cleanly.

    Streams stay open until the command ends (``--follow``: until Ctrl-C, then the connection
    is closed and the remote tail ends with it).
    """
    try:
        with translated(name):
            result = conn.run(shlex.join(argv), hide=False, warn=True, pty=False,
                              in_stream=False, out_stream=out, err_stream=sys.stderr)  # fmt: skip
    except KeyboardInterrupt:
        return 0
    code = int(result.exited)
    if code not in (0, 130, 143):
        raise HostError(name, f"{argv[0]} exited {code}")
    return code
