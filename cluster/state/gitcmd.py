"""Running git: one place that builds argument lists, sets a safe environment, parses output."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import GitError, RemoteUnavailable
from cluster.state.reflocks import locks_named

# Messages by which git says the remote itself is not there (as opposed to a lost CAS).
_UNREACHABLE = (
    "does not appear to be a git repository",
    "could not read from remote repository",
    "not a git repository",
    "unable to access",
    "connection refused",
    "connection timed out",
    "could not resolve host",
    "no such file or directory",
    "host key verification failed",
    "permission denied",
    "unable to look up",
    "the remote end hung up",
)


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
    )
    # Keep-alives turn a connection that went silent (a cut network) into an error within
    # ~10 s instead of a git command stalled until its timeout.
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10 "
                   "-o ServerAliveInterval=5 -o ServerAliveCountMax=2")
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    check: bool = True,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> Completed:
    argv = ["git"] + (["--git-dir", str(git_dir)] if git_dir else []) + list(args)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=git_env(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RemoteUnavailable(f"git {args[0]} timed out after {timeout:.0f}s") from exc
    done = Completed(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise_for(argv, done)
    return done


def raise_for(argv: list[str], done: Completed) -> None:
    lowered = done.stderr.lower()
    if any(marker in lowered for marker in _UNREACHABLE):
        raise RemoteUnavailable(f"state remote unreachable: {done.stderr.strip()}")
    raise GitError(argv, done.returncode, done.stderr)


@dataclass(frozen=True)
class RefUpdate:
    """One ref to set (``new``) or delete (``new`` None), expecting ``old`` (None: absent)."""

    ref: str
    new: str | None
    old: str | None


@dataclass(frozen=True)
class PushReport:
    accepted: frozenset[str]
    rejected: frozenset[str]
    locks: tuple[Path, ...] = ()  # lock files git found held (see reflocks)

    @property
    def ok(self) -> bool:
        return not self.rejected


def push(
    git_dir: Path, remote: str, updates: Sequence[RefUpdate], *, atomic: bool = False
) -> PushReport:
    """Compare-and-swap every ref in ``updates`` on the remote; report which took effect."""
    argv = ["push", "--porcelain", "--no-verify"]
    if atomic:
        argv.append("--atomic")
    for update in updates:
        argv.append(f"--force-with-lease={update.ref}:{update.old or ''}")
    argv.append(remote)
    for update in updates:
        argv.append(f"{update.new}:{update.ref}" if update.new else f":{update.ref}")
    done = run_git(argv, git_dir=git_dir, check=False)
    accepted: set[str] = set()
    rejected: set[str] = set()
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or ":" not in parts[1]:
            continue
        ref = parts[1].split(":", 1)[1]
        (rejected if parts[0] == "!" else accepted).add(ref)
    if done.returncode != 0 and not rejected:
        raise_for(["git", *argv], done)
    if atomic and rejected:
        rejected |= accepted  # "atomic push failed" lines mark the rest as rejected too
        accepted.clear()
    return PushReport(frozenset(accepted), frozenset(rejected), tuple(locks_named(done.stderr)))


def list_refs(
    patterns: Sequence[str], *, git_dir: Path | None = None, remote: str | None = None
) -> dict[str, str]:
    """Refs matching ``patterns`` as ``{ref: sha}``: from a local repo or via ls-remote."""
    if remote is not None:
        done = run_git(["ls-remote", remote, *patterns], git_dir=git_dir, timeout=60)
        pairs = (line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
        return {ref: sha for sha, ref in pairs}
    done = run_git(["for-each-ref", "--format=%(objectname) %(refname)", *patterns],
                   git_dir=git_dir, timeout=60)
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        sha, _, ref = line.partition(" ")
        out[ref] = sha
    return out
