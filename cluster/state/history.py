"""What ``main``'s history says that its tree may no longer show.

Two facts are read from the log rather than from the tip's tree: when each task file first
landed (the age half of the claim order) and which ids a fold ever archived. The second is
the state repo's defence without its hook: a commit on ``main`` may drop ``archive/`` or bring
a finished task's file back (a merge of an old ``main``, a plain-path writer), but it cannot
remove the fold commits already in its history, so an id archived there is never run again.

Paths come NUL-separated (``-z``): a name git would quote (``tasks/nl\\n.yaml``) is read as it
is. Merges are compared with their first parent, as a fold is written (the archived files are
new against ``main`` before it), and every branch of history is followed (``--full-history``):
a merge that takes an old tree is not allowed to hide the folds behind it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cluster.state.gitcmd import run_git
from cluster.state.ids import ARCHIVE_DIR


@dataclass(frozen=True)
class Added:
    """A file that ``commit`` (committed at ``time``) added at ``path``."""

    commit: str
    time: float
    path: str


def added(git_dir: Path, tip: str, prefix: str, *, since: str | None = None,
          env: Mapping[str, str] | None = None) -> Iterator[Added]:
    """Every file added under ``prefix/`` in ``tip``'s history (minus ``since``'s), newest
    commit first."""
    argv = ["log", "-z", "--format=%x01%H%x02%ct", "--name-only", "--diff-filter=A",
            "--no-renames", "--full-history", "--diff-merges=first-parent", tip]
    if since is not None:
        argv += ["--not", since]
    out = run_git([*argv, "--", f"{prefix}/"], git_dir=git_dir, env=env).stdout
    commit, when, first = "", 0.0, False
    for token in out.split("\0"):
        if token.startswith("\x01"):
            commit, _, stamp = token[1:].partition("\x02")
            when, first = float(stamp), True
            continue
        path = token.removeprefix("\n") if first else token  # git puts one before the list
        first = False
        if commit and path.startswith(f"{prefix}/"):
            yield Added(commit, when, path)


def is_ancestor(git_dir: Path, old: str, new: str,
                env: Mapping[str, str] | None = None) -> bool:
    done = run_git(["merge-base", "--is-ancestor", old, new], git_dir=git_dir, check=False,
                   env=env)
    return done.returncode == 0


class FoldLedger:
    """The ids that a fold archived anywhere in ``main``'s history, each with that fold.

    Kept up to date by reading only the commits ``main`` gained since the last reading; a
    ``main`` that is no descendant of the last one (history rewritten) is read whole.
    """

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.folded: dict[str, str] = {}
        self._main: str | None = None

    def update(self, main: str | None) -> Mapping[str, str]:
        if main == self._main:
            return self.folded
        since = self._main
        if main is None or (since is not None and not is_ancestor(self.git_dir, since, main)):
            self.folded, since = {}, None
        if main is not None:
            for item in added(self.git_dir, main, ARCHIVE_DIR, since=since):
                parts = item.path.split("/")  # archive/<xx>/<key>/result[.<tip>].yaml
                if len(parts) == 4 and parts[3].startswith("result"):
                    self.folded.setdefault(parts[2], item.commit)
        self._main = main
        return self.folded
