"""``python -m cluster.hooks pre-receive|pre-commit``: what the installed hook scripts run.

The server runs this once per push, so what it imports is paid per claim: nothing here at
module level pulls in pydantic or the task schema. A push that only writes claim and agent
refs is judged by the same code as any other; the parts only main needs are imported when a
push touches main, and the message formatting only when there is something to print (see
docs/state-protocol.md, Performance).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cluster.errors import ClusterError

USAGE = "usage: python -m cluster.hooks pre-receive|pre-commit"


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("pre-receive", "pre-commit"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if argv[0] == "pre-receive":
            from cluster.hooks.receive import clear_stale_locks, judge

            git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
            lines = sys.stdin.readlines()
            problems = judge(git_dir, lines)
            if not problems:
                for lock in clear_stale_locks(git_dir, lines):
                    print(f"pre-receive: removed {lock}, left by a writer that died",
                          file=sys.stderr)
            verdict = "push refused by the state repo's rules (docs/hooks.md)"
        else:
            from cluster.hooks.precommit import check_staged

            problems = check_staged(Path.cwd())
            verdict = "commit refused: the state repo's server would reject it (docs/hooks.md)"
    except ClusterError as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1
    if problems:
        from cluster.state.schema import one_line  # the task schema: heavy, and only now needed
    for problem in problems:  # a name from the push may hold a newline: each problem one line
        print(one_line(problem, limit=2000), file=sys.stderr)
    if problems:
        print(verdict, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
