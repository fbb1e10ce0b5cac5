"""``python -m cluster.hooks pre-receive|pre-commit``: what the installed hook scripts run.

The server runs this once per push, so what it imports is paid per claim: nothing here at
module level pulls in pydantic or the task schema. A push that only writes claim and agent
refs is judged by the same code as any other; the parts only main needs are imported when a
push touches main, and the message formatting only when there is something to print (see
docs/state-protocol.md, Performance). The pre-receive hook asks the repo's judge server first,
when one runs (cluster.hooks.ask): until the push is judged here, nothing but the
interpreter's own sys, posix and _socket is imported (not even os, socket or pathlib: a push
pays for each).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself costs a push ~20 ms: mypy reads this name as True

if TYPE_CHECKING:
    from collections.abc import Sequence

USAGE = "usage: python -m cluster.hooks pre-receive|pre-commit"


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("pre-receive", "pre-commit"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "pre-receive":
        from cluster.hooks.ask import main as pre_receive

        return pre_receive(argv)
    from pathlib import Path

    from cluster.errors import ClusterError

    try:
        from cluster.hooks.precommit import check_staged

        problems = check_staged(Path.cwd())
    except ClusterError as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1
    if problems:
        from cluster.state.schema import one_line  # the task schema: heavy, and only now needed
    for problem in problems:  # a name from the file may hold a newline: each problem one line
        print(one_line(problem, limit=2000), file=sys.stderr)
    if problems:
        print("commit refused: the state repo's server would reject it (docs/hooks.md)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
