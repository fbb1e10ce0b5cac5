"""Git bundles of a whole state repo: create, verify in an empty repo, list refs, read a file."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cluster.backup.errors import BackupError
from cluster.errors import GitError
from cluster.state.gitcmd import run_git

BUNDLE_TIMEOUT = 600.0
SNAPSHOT = "snapshot.git"


def snapshot_argvs(repo: str, scratch: str, target: str) -> list[list[str]]:
    """The git commands (each without the leading ``git``) that bundle every ref of the
    repo at ``repo`` as of one moment into ``target``, working in the empty dir ``scratch``.

    ``git bundle create --all`` on a live repo lists its refs, walks their history and then
    reads each ref again to write it: one that moved in between (a heartbeat, a renewal, a
    fold moving main) is left out of the bundle without a word. So the refs are first read
    once, by a ``--shared`` mirror clone (one ref advertisement; objects borrowed, not
    copied), and the clone, which nothing writes, is bundled. Run here for a repo on a path,
    on the state host for one over SSH.
    """
    snapshot = f"{scratch}/{SNAPSHOT}"
    return [["clone", "--quiet", "--mirror", "--shared", "--", repo, snapshot],
            bundle_argv(snapshot, target)]


def bundle_argv(git_dir: str, target: str) -> list[str]:
    """Bundle every ref of ``git_dir``, which nothing else writes (a snapshot, a mirror)."""
    return ["--git-dir", git_dir, "bundle", "create", "--quiet", target, "--all"]


def create_local(repo: Path, target: Path) -> None:
    """Bundle every ref of the bare repo ``repo`` (heads, claims, agents, anything else), as
    of one moment however busy its writers are."""
    if not (repo / "HEAD").exists() or not (repo / "objects").is_dir():
        raise BackupError(f"{repo} is not a git repository (no HEAD or objects/)")
    with tempfile.TemporaryDirectory(prefix="ccc-snapshot-") as scratch:
        for argv in snapshot_argvs(str(repo), scratch, str(target)):
            run_git(argv, timeout=BUNDLE_TIMEOUT)


def list_heads(bundle: Path) -> dict[str, str]:
    """``{ref: sha}`` of the refs the bundle carries (its symbolic HEAD left out)."""
    try:
        done = run_git(["bundle", "list-heads", str(bundle)], timeout=BUNDLE_TIMEOUT)
    except GitError as exc:
        raise BackupError(f"{bundle}: not a readable git bundle: {exc.stderr}") from exc
    refs: dict[str, str] = {}
    for line in done.stdout.splitlines():
        sha, _, ref = line.partition(" ")
        if ref.startswith("refs/"):
            refs[ref] = sha
    return refs


def verify(bundle: Path) -> None:
    """``git bundle verify`` in a fresh empty repo: proves the bundle is complete on its own."""
    with tempfile.TemporaryDirectory(prefix="ccc-bundle-") as scratch:
        git_dir = Path(scratch) / "verify.git"
        run_git(["init", "--quiet", "--bare", str(git_dir)])
        done = run_git(["bundle", "verify", "--quiet", str(bundle)], git_dir=git_dir,
                       check=False, timeout=BUNDLE_TIMEOUT)  # fmt: skip
        if done.returncode != 0:
            raise BackupError(f"git bundle verify failed for {bundle}: {done.stderr.strip()}")
    if not list_heads(bundle):
        raise BackupError(f"{bundle} carries no refs")


def fetch_all(bundle: Path, git_dir: Path) -> None:
    """Copy every ref of ``bundle`` into ``git_dir`` under the same name, objects included."""
    run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--update-head-ok",
             str(bundle), "refs/*:refs/*"], git_dir=git_dir, timeout=BUNDLE_TIMEOUT)  # fmt: skip


def file_at(bundle: Path, ref: str, path: str) -> bytes | None:
    """The file ``path`` in the tree of ``ref`` inside ``bundle`` (None when absent)."""
    if ref not in list_heads(bundle):
        return None
    with tempfile.TemporaryDirectory(prefix="ccc-bundle-") as scratch:
        git_dir = Path(scratch) / "read.git"
        run_git(["init", "--quiet", "--bare", str(git_dir)])
        run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", str(bundle),
                 f"{ref}:refs/read"], git_dir=git_dir, timeout=BUNDLE_TIMEOUT)  # fmt: skip
        done = run_git(["cat-file", "-p", f"refs/read:{path}"], git_dir=git_dir, check=False)
        return done.stdout.encode() if done.returncode == 0 else None
