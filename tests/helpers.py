"""Test helpers: real state repos, real git clones, real agent processes, deadline polling.

Each helper is written once: here ``git`` runs git, ``poll`` waits for a condition and
``commit_files`` commits as a person would; ``tests.clients`` has the state-repo clients.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import parser

from cluster.agent.runner import AttemptReport
from cluster.secret import Secret
from cluster.state.client import Held
from cluster.state.init import init_state_repo

ROOT = Path(__file__).resolve().parents[1]


def poll(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str],
         interval: float = 0.05) -> Any:
    """Return the first truthy value of ``predicate``; fail loudly at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {said}")
        time.sleep(interval)


def state_url(repo: Path, style: str) -> str:
    """A plain path takes the ref-transaction path; file:// the same under the repo's rules
    (its judge's, else a push to its hook)."""
    return f"file://{repo}" if style == "file" else str(repo)


def local_ssh(where: Path, body: str | None = None) -> str:
    """An "ssh" (for ``GIT_SSH_COMMAND``, with ``GIT_SSH_VARIANT=ssh``) that runs the remote
    command on this machine, or ``body`` instead: git's ssh transport and the watch go through
    it as through the real one, and the remote is read through a mirror and pushed to, as a
    state host is. The URL: :func:`ssh_url`."""
    where.mkdir(parents=True, exist_ok=True)
    fake = where / "fake-ssh"
    run = body or 'for last; do :; done\nexec sh -c "$last"'
    bindir = Path(sys.executable).parent
    fake.write_text(f"#!/bin/sh\nPATH={shlex.quote(str(bindir))}:$PATH\n{run}\n")
    fake.chmod(0o755)
    return str(fake)


def ssh_url(repo: Path) -> str:
    """``repo`` as an ssh:// URL to a host that does not exist: only :func:`local_ssh`
    reaches it."""
    return f"ssh://git@state.invalid{repo}"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """An agent's metrics on ``port``, as ``name{label=value,...}``: value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def make_state(tmp_path: Path, settings: dict[str, Any] | None = None) -> Path:
    repo = tmp_path / "state.git"
    text = yaml.safe_dump(settings).encode() if settings else b"{}\n"
    init_state_repo(repo, settings=text)
    return repo


def task_doc(task_id: str, command: str = "true", specialty: str = "backend",
             **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": task_id, "title": f"task {task_id}", "specialty": specialty,
        "repo": "acme/web", "executor": {"kind": "command", "command": command},
    }
    doc.update(extra)
    return doc


def commit_files(repo: Path | str, files: dict[str, bytes | str | None], work: Path,
                 message: str = "add tasks") -> None:
    """Commit files to main as a person would: clone, write, commit, push (None deletes)."""
    if not (work / ".git").exists():
        git(["clone", "--quiet", str(repo), str(work)], ROOT)
        git(["config", "user.name", "Test Person"], work)
        git(["config", "user.email", "person@example.invalid"], work)
    git(["pull", "--quiet", "--rebase", "origin", "main"], work)
    for name, data in files.items():
        path = work / name
        if data is None:
            git(["rm", "-q", "-r", name], work)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        git(["add", name], work)
    git(["commit", "--quiet", "--no-verify", "-m", message], work)
    for _ in range(20):  # agents fold into main meanwhile: rebase and retry, as people do
        pushed = subprocess.run(["git", "push", "--quiet", "--no-verify", "origin", "HEAD:main"],
                                cwd=work, capture_output=True, text=True, check=False)
        if pushed.returncode == 0:
            return
        git(["pull", "--quiet", "--rebase", "origin", "main"], work)
    raise AssertionError(f"could not push to {repo}: {pushed.stderr}")


def task_files(docs: list[dict[str, Any]]) -> dict[str, bytes | str | None]:
    return {f"tasks/{d['id']}.yaml": yaml.safe_dump(d) for d in docs}


def git(args: list[str], cwd: Path) -> str:
    """``git *args`` in ``cwd``; its stdout as it is (callers strip); fails loudly on an error."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def main_of(repo: Path) -> str:
    """The commit main of the bare repo ``repo`` points at."""
    return git(["--git-dir", str(repo), "rev-parse", "--verify", "refs/heads/main"], ROOT).strip()


class AgentProcess:
    """A real ``claude-cluster agent run`` process with its JSON-lines event file."""

    def __init__(self, state: str | Path, agent_id: str, workdir: Path, *,
                 specialty: str = "backend", lease: float = 5.0, heartbeat: float = 1.0,
                 max_tasks: int = 1, exit_when_idle: bool = False, poll_s: float = 1.0,
                 runner: str = "scratch", allow_local: bool = True,
                 extra: list[str] | None = None) -> None:
        self.id = agent_id
        self.events_path = workdir / f"{agent_id}.events.jsonl"
        self.log_path = workdir / f"{agent_id}.log"
        argv = [sys.executable, "-m", "cluster", "agent", "run", "--state", str(state),
                "--id", agent_id, "--specialty", specialty, "--max-tasks", str(max_tasks),
                "--lease", str(lease), "--heartbeat", str(heartbeat), "--poll", str(poll_s),
                "--events", str(self.events_path), "--workdir", str(workdir / "agents"),
                "--runner", runner]
        if allow_local:
            argv.append("--allow-local-repos")  # the tests' target repos are tmp_path paths
        if exit_when_idle:
            argv.append("--exit-when-idle")
        argv += extra or []
        self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env)

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def saw(self, event: str, task: str | None = None) -> dict[str, Any] | None:
        for item in self.events():
            if item["event"] == event and (task is None or item.get("task") == task):
                return item
        return None

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"agent {self.id} did not exit within {timeout}s; log:\n{self.tail()}"
            ) from exc

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Holding:
    """A runner that holds its task until ``release`` is set (or it is cancelled)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    @property
    def secrets(self) -> Sequence[Secret]:
        return ()

    @property
    def credentials(self) -> Mapping[str, str]:
        return {}

    def run(self, held: Held, cancel: threading.Event) -> AttemptReport:
        while not (self.release.wait(0.05) or cancel.is_set()):
            pass
        return AttemptReport("succeeded", "released")


class SilentStream:
    """A state host's stream (cluster.state.watch.Stream) that tells nothing: running
    (``live``) or down, as the test sets it. Running, it is what an agent sees of a change no
    move of main names (a release, a claim given up) or one the stream missed."""

    def __init__(self, live: bool = True) -> None:
        self.live = live

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
