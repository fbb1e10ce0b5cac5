"""Git bundles of a whole state repo: create, verify in an empty repo, list refs, read a file."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cluster.backup.errors import BackupError
from cluster.errors import GitError
from cluster.state.gitcmd import run_git

BUNDLE_TIMEOUT = 600.0


def create_local(repo: Path, target: Path) -> None:
    """Bundle every ref of the bare repo ``repo`` (heads, claims, agents, anything else)."""
    if not (repo / "HEAD").exists() or not (repo / "objects").is_dir():
        raise BackupError(f"{repo} is not a git repository (no HEAD or objects/)")
    run_git(["bundle", "create", "--quiet", str(target), "--all"], git_dir=repo,
            timeout=BUNDLE_TIMEOUT)  # fmt: skip


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
