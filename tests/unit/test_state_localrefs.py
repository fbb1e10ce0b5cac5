"""A state repo on a local path, moved away while an agent writes to it, is never forked.

git creates a ref's missing leading directories before it locks the ref. A git told the
repository's absolute path, whose repository is renamed away between opening it and locking
the ref, re-creates an empty ``refs/claims/`` skeleton at the old path; the repository moved
back then lands inside that skeleton and the agents find no state remote ever again (found by
``test_remote_gone_for_a_while_agents_back_off_and_converge`` in CI, about one rename in six).
The window is made deterministic here by a ``git`` in front of the real one that opens the
repository, lets the test move it, and only then hands git the transaction.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import threading
from pathlib import Path

import pytest

from cluster.errors import RemoteUnavailable
from cluster.state.gitcmd import PushReport, RefUpdate, run_git
from cluster.state.localrefs import read_refs, update_refs
from tests.helpers import poll

GATE = '''#!{python}
"""git, with update-ref held after the repository is open until the test says go."""
import os, subprocess, sys, time
from pathlib import Path
real, gate = {real!r}, Path({gate!r})
args = sys.argv[1:]
if "update-ref" not in args:
    os.execv(real, [real, *args])
data = sys.stdin.read()
git = subprocess.Popen([real, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
git.stdin.write("start\\n")
git.stdin.flush()
git.stdout.readline()  # "start: ok": the repository is open
(gate / "ready").touch()
deadline = time.monotonic() + 30
while not (gate / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("the test never said go")
    time.sleep(0.01)
git.stdin.write(data + "prepare\\ncommit\\n")
git.stdin.close()
git.stdout.read()
sys.exit(git.wait())
'''


@pytest.fixture
def gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    real = shutil.which("git")
    assert real is not None
    bindir, gate = tmp_path / "bin", tmp_path / "gate"
    bindir.mkdir()
    gate.mkdir()
    script = bindir / "git"
    script.write_text(GATE.format(python=sys.executable, real=real, gate=str(gate)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return gate


def a_repo(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "state.git"
    run_git(["init", "--quiet", "--bare", str(repo)])
    tree = run_git(["mktree"], git_dir=repo, input_text="").stdout.strip()
    commit = run_git(["commit-tree", tree, "-m", "claim"], git_dir=repo,
                     env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    return repo, commit.stdout.strip()


def move_mid_write(write: threading.Thread, gate: Path, repo: Path, away: Path) -> None:
    write.start()
    poll(lambda: (gate / "ready").exists(), 30, "git to open the repository")
    repo.rename(away)
    (gate / "go").touch()
    write.join(30)
    assert not write.is_alive(), "the write never finished"


def test_a_write_in_flight_follows_the_repo_and_never_recreates_its_path(
        tmp_path: Path, gated: Path) -> None:
    repo, commit = a_repo(tmp_path)
    away = tmp_path / "state.git.away"
    outcome: list[PushReport] = []
    write = threading.Thread(target=lambda: outcome.append(update_refs(
        repo, [RefUpdate("refs/claims/t1", commit, None)], atomic=False)))
    move_mid_write(write, gated, repo, away)
    assert not repo.exists(), f"the write re-created {repo}: {sorted(repo.rglob('*'))}"
    assert read_refs(away, ["refs/claims"]) == {"refs/claims/t1": commit}
    assert outcome[0].accepted == frozenset({"refs/claims/t1"})


def test_control_git_given_the_path_recreates_it(tmp_path: Path, gated: Path) -> None:
    """Without running inside the repository, the same move leaves a skeleton behind."""
    repo, commit = a_repo(tmp_path)
    away = tmp_path / "state.git.away"
    write = threading.Thread(target=lambda: run_git(
        ["update-ref", "--stdin"], git_dir=repo, check=False,
        input_text=f"update refs/claims/t1 {commit} {'0' * 40}\n"))
    move_mid_write(write, gated, repo, away)
    assert (repo / "refs" / "claims").is_dir() and not (repo / "HEAD").exists()


def test_a_repo_gone_before_the_write_is_not_there(tmp_path: Path) -> None:
    repo, commit = a_repo(tmp_path)
    repo.rename(tmp_path / "elsewhere.git")
    with pytest.raises(RemoteUnavailable, match="is not there"):
        update_refs(repo, [RefUpdate("refs/claims/t1", commit, None)], atomic=True)
    assert not repo.exists()
