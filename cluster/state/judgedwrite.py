"""Writes to a ``file://`` state repo judged by its judge server, without a push.

A push to a repository on this machine costs ten processes (git push, receive-pack, its
pack reader and connectivity walks, the hook and its client) to say what one ref transaction
says, once the pre-receive rules accepted it. When the repository's judge server
(cluster.hooks.judged) answers, a writer here asks it the very question the installed hook
asks it (the same request, the ref lines pre-receive would read), with the objects already in
the repository, then makes the same compare-and-swap receive-pack would (``update-ref``: the
same locks and old values). The rules and the CAS are the push's; only the transport is gone.
A writer that can reach the repository's files can write its refs without any hook, so this
takes nothing from the rules' reach: every write of ours is judged as a push is.

Without an answer (no server, another release, another user, a declined request) the caller
pushes as before, and the installed hook judges.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cluster.hooks.ask import ask
from cluster.state.gitcmd import RefUpdate
from cluster.state.localrefs import ZERO


def request_lines(updates: Sequence[RefUpdate]) -> list[str]:
    """pre-receive's input for ``updates``: ``old new ref`` lines, zeros for none."""
    return [f"{u.old or ZERO} {u.new or ZERO} {u.ref}\n" for u in updates]


def judge(git_dir: Path, updates: Sequence[RefUpdate]) -> tuple[int, list[str]] | None:
    """The judge server's verdict on ``updates`` to the repository at ``git_dir`` (its exit
    code as the hook's and the lines it would print), or None when none answered.

    The socket is reached through a descriptor of the repository (``/proc/self/fd/N``), so a
    repository path longer than a socket address allows is asked all the same, and the
    request names the repository by its resolved path, as the server checks it.
    """
    try:
        fd = os.open(git_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        where = {"GIT_DIR": str(Path(f"/proc/self/fd/{fd}").resolve())}
        return ask(f"/proc/self/fd/{fd}", request_lines(updates), where)
    finally:
        os.close(fd)
