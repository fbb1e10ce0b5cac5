"""Running git: the sealed environment, argument lists, commands, push and ref output parsed.

Every git this project's production code runs on the local host starts here: one command
through :func:`run_git` or :func:`run_git_bytes`, or the long-lived ``cat-file --batch`` of
cluster.state.gitobj through :func:`start_git`. Inside a git hook, callers add
:func:`hook_env`. (Git that backups run on the state host itself goes over SSH, through
cluster.transport.)
"""

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


# All that any git this project runs inherits from the caller's environment: no GIT_* variable
# (a GIT_DIR or GIT_CONFIG_* there would redirect or reconfigure it) but what ssh needs.
INHERITED = ("PATH", "HOME", "LANG", "SSH_AUTH_SOCK", "GIT_SSH_COMMAND")
# Keep-alives turn a connection that went silent (a cut network) into an error within ~10 s
# instead of a git command stalled until its timeout.
DEFAULT_SSH = ("ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 "
               "-o ServerAliveCountMax=2")
# Settings no repository's own config, nor HOME's, can override (command-line scope wins): git
# runs no hook, no fsmonitor, no submodule's git, and speaks only these transports (never
# ext:: or fd::; plain http only where a caller adds it, see transport_config).
SEALED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("diff.ignoreSubmodules", "all"),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
    ("protocol.ssh.allow", "always"),
    ("protocol.https.allow", "always"),
)
# What a git hook gets from the git running it (the quarantine holding a push's objects, the
# index of a commit in progress) and passes on to its own git calls: see hook_env.
HOOK_VARIABLES = ("GIT_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                  "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", "GIT_WORK_TREE",
                  "GIT_COMMON_DIR")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

Config = Sequence[tuple[str, str]]


def git_env(extra: Mapping[str, str] | None = None, config: Config = ()) -> dict[str, str]:
    """A sealed environment: the few ``INHERITED`` variables, no system or global config,
    :data:`SEALED_CONFIG` plus ``config`` as command-line settings, then ``extra``."""
    env = {name: os.environ[name] for name in INHERITED if os.environ.get(name)}
    env.setdefault("PATH", os.defpath)
    env.setdefault("GIT_SSH_COMMAND", DEFAULT_SSH)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        }
    )
    pairs = [*SEALED_CONFIG, *config]
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    if extra:
        env.update(extra)
    return env


def hook_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Inside a git hook: the :data:`HOOK_VARIABLES` its git set, for the hook's git calls
    (without them a pre-receive hook cannot see the objects being pushed)."""
    source = os.environ if environ is None else environ
    return {name: source[name] for name in HOOK_VARIABLES if source.get(name)}


def transport_config(url: str) -> list[tuple[str, str]]:
    """Plain http is allowed for one command only when it talks to a loopback address."""
    if not url.startswith("http:"):
        return []
    from urllib.parse import urlsplit  # only here: the hook's imports are paid per push

    parts = urlsplit(url)
    if parts.scheme == "http" and (parts.hostname or "") in LOOPBACK:
        return [("protocol.http.allow", "always")]
    return []


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def git_argv(args: Sequence[str], git_dir: Path | None, work_tree: Path | None) -> list[str]:
    argv = ["git"] + (["--git-dir", str(git_dir)] if git_dir else [])
    return argv + (["--work-tree", str(work_tree)] if work_tree else []) + list(args)


def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    check: bool = True,
    timeout: float | None = 120.0,
    env: Mapping[str, str] | None = None,
    config: Config = (),
) -> Completed:
    """One git command in the sealed environment (:func:`git_env`), output as text."""
    argv = git_argv(args, git_dir, work_tree)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            input=input_text,
            capture_output=True,
            encoding="utf-8",
            errors="replace",  # a path that is not UTF-8 must not raise here
            timeout=timeout,
            env=git_env(env, config),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RemoteUnavailable(f"git {args[0]} timed out after {timeout:.0f}s") from exc
    done = Completed(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise_for(argv, done)
    return done


def start_git(args: Sequence[str], *, git_dir: Path,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A long-lived git in the sealed environment, talking through pipes on stdin and stdout
    (stderr discarded); the caller owns the process."""
    return subprocess.Popen(git_argv(args, git_dir, None), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=git_env(env))


def run_git_bytes(
    args: Sequence[str],
    *,
    git_dir: Path,
    work_tree: Path | None = None,
    input_bytes: bytes | None = None,
    timeout: float | None = 120.0,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Like :func:`run_git`, for output that may be binary (blobs); any failure is GitError."""
    argv = git_argv(args, git_dir, work_tree)
    try:
        proc = subprocess.run(argv, input=input_bytes, capture_output=True, timeout=timeout,
                              env=git_env(env), check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise GitError(argv, -1, f"timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise GitError(argv, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


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
    git_dir: Path, remote: str, updates: Sequence[RefUpdate], *, atomic: bool = False,
    env: Mapping[str, str] | None = None,
) -> PushReport:
    """Compare-and-swap every ref in ``updates`` on the remote; report which took effect.
    ``env`` goes to git as :func:`run_git`'s does."""
    argv = ["push", "--porcelain", "--no-verify"]
    if atomic:
        argv.append("--atomic")
    for update in updates:
        argv.append(f"--force-with-lease={update.ref}:{update.old or ''}")
    argv.append(remote)
    for update in updates:
        argv.append(f"{update.new}:{update.ref}" if update.new else f":{update.ref}")
    done = run_git(argv, git_dir=git_dir, check=False, env=env)
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
    patterns: Sequence[str], *, git_dir: Path | None = None, remote: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Refs matching ``patterns`` as ``{ref: sha}``: from a local repo or via ls-remote."""
    if remote is not None:
        done = run_git(["ls-remote", remote, *patterns], git_dir=git_dir, timeout=60, env=env)
        pairs = (line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
        return {ref: sha for sha, ref in pairs}
    done = run_git(["for-each-ref", "--format=%(objectname) %(refname)", *patterns],
                   git_dir=git_dir, timeout=60, env=env)
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        sha, _, ref = line.partition(" ")
        out[ref] = sha
    return out
