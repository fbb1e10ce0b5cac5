"""The server's pre-receive hook: judge every ref update of a push at once, print each problem."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cluster.hooks.claimref import check_agent, check_claim
from cluster.hooks.push import AGENTS, CLAIMS, MAIN, Push, parse_updates
from cluster.state.reflocks import clear_stale

OTHER_REF = "only refs/heads/main, refs/claims/<key> and refs/agents/<id> exist in a state repo"


def judge(git_dir: Path, lines: Iterable[str]) -> list[str]:
    """Every problem of the push described by pre-receive's input ``lines``; empty: accept."""
    push = Push.open(git_dir, parse_updates(lines))
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
