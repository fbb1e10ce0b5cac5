"""The server's pre-receive hook: judge every ref update of a push at once, print each problem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cluster.errors import ClusterError
from cluster.hooks.claimref import check_agent, check_claim
from cluster.hooks.push import Push, parse_updates
from cluster.state.gitobj import ObjectStore
from cluster.state.ids import AGENTS, CLAIMS, MAIN
from cluster.state.reflocks import clear_stale

OTHER_REF = "only refs/heads/main, refs/claims/<key> and refs/agents/<id> exist in a state repo"
VERDICT = "push refused by the state repo's rules (docs/hooks.md)"


def judge(git_dir: Path, lines: Iterable[str],
          environ: Mapping[str, str] | None = None,
          shared: ObjectStore | None = None) -> list[str]:
    """Every problem of the push described by pre-receive's input ``lines``; empty: accept.
    ``environ``: the hook's environment (git's quarantine variables), this process's by
    default; ``shared``: the judge server's reader of the repository (Push.open)."""
    push = Push.open(git_dir, parse_updates(lines), environ, shared)
    try:
        problems: list[str] = []
        folded: set[str] = set()
        if push.main is not None:
            # Main's rules parse tasks and settings (pydantic, the task schema): imported only
            # for a push that writes main, so a claim's push starts no such import graph.
            from cluster.hooks.mainref import check_main

            problems, folded = check_main(push)
        for update in push.updates:
            if update.ref == MAIN:
                continue
            if update.ref.startswith(CLAIMS):
                problems += check_claim(push, update, folded)
            elif update.ref.startswith(AGENTS):
                problems += check_agent(push, update)
            else:
                problems.append(f"{update.ref}: {OTHER_REF}")
        return problems
    finally:
        push.close()


def clear_stale_locks(git_dir: Path, lines: Iterable[str]) -> list[Path]:
    """Remove the locks that dead writers left on the refs an accepted push writes (they
    would fail it: see cluster.state.reflocks); return those removed."""
    updates = parse_updates(lines)
    locks = [git_dir / f"{u.ref}.lock" for u in updates]
    if any(u.new is None for u in updates):
        locks.append(git_dir / "packed-refs.lock")  # git takes it to delete a ref
    return clear_stale(locks, git_dir)


def pre_receive(git_dir: Path, lines: list[str],
                environ: Mapping[str, str] | None = None) -> tuple[int, list[str]]:
    """The whole hook: its exit code and the lines it prints."""
    try:
        return verdict(git_dir, lines, environ)
    except ClusterError as exc:
        return 1, [f"pre-receive: {exc}"]


def verdict(git_dir: Path, lines: list[str],
            environ: Mapping[str, str] | None = None,
            shared: ObjectStore | None = None) -> tuple[int, list[str]]:
    """:func:`pre_receive` without its last resort: a ClusterError (a git command that
    failed, say) is raised, so that the judge server can leave such a push to the hook
    itself, in the hook's own environment (cluster.hooks.judged)."""
    problems = judge(git_dir, lines, environ, shared)
    if not problems:
        return 0, [f"pre-receive: removed {lock}, left by a writer that died"
                   for lock in clear_stale_locks(git_dir, lines)]
    from cluster.state.schema import one_line  # the task schema: heavy, and only now needed

    # A name from the push may hold a newline: each problem one line.
    return 1, [*(one_line(problem, limit=2000) for problem in problems), VERDICT]
