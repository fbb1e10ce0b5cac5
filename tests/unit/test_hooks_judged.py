"""The judge server (cluster.hooks.judged) and the hook's client of it (cluster.hooks.ask).

The installed pre-receive script runs as git runs it, with the server in this process: every
verdict must be the one the hook gives alone, and nothing the server could be made to say by
someone else (another release, changed code, another user, a dead or planted socket, a
malformed request) may decide a push.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.errors import ConfigError
from cluster.hooks import ask, judged
from cluster.hooks.receive import pre_receive
from tests.helpers import ROOT
from tests.unit.test_hooks_lean import CASES, Repo, repo

__all__ = ["repo"]  # the fixture, shared with test_hooks_lean


def run_script(git_dir: Path, lines: list[str],
               extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed hook script, as receive-pack starts it: in the repo, with GIT_DIR=."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "GIT_DIR": ".", **(extra or {})}
    return subprocess.run([str(git_dir / "hooks" / "pre-receive")], cwd=git_dir,
                          input="".join(f"{x}\n" for x in lines), env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def alone(git_dir: Path, lines: list[str]) -> tuple[int, list[str]]:
    return pre_receive(git_dir, [f"{x}\n" for x in lines], {"GIT_DIR": str(git_dir)})


@pytest.fixture
def server(repo: Repo) -> Iterator[judged.JudgeServer]:
    with judged.serving(repo.path) as srv:
        yield srv


def test_the_installed_script_records_where_it_imports_from(repo: Repo) -> None:
    text = (repo.path / "hooks" / "pre-receive").read_text()
    recorded = next(x for x in text.splitlines() if x.startswith("CLUSTER_HOOK_PATH="))
    dirs = recorded.split("=", 1)[1].strip("'").split(":")
    assert str(ROOT) in dirs  # this checkout: an editable install's finder is not needed


@pytest.mark.parametrize("name", sorted(CASES))
def test_served_verdicts_are_the_hooks_own(repo: Repo, server: judged.JudgeServer,
                                           name: str) -> None:
    lines, ok = CASES[name](repo)
    code, printed = alone(repo.path, lines)
    done = run_script(repo.path, lines)
    assert server.answered == 1, f"{name}: the server did not judge it: {done.stderr}"
    assert done.stderr.splitlines() == printed, name
    assert done.returncode == code == (0 if ok else 1), f"{name}: {done.stderr}"


# What a served push's client must not import: each is paid by every push (enum and selectors
# come with socket; collections.abc and posixpath with os).
WRAPPERS = {"socket", "os", "enum", "selectors", "pathlib", "json", "typing"}


def test_a_served_push_starts_only_the_client_and_the_interpreters_own_modules(
        repo: Repo, server: judged.JudgeServer) -> None:
    """The client as the installed script starts it (no ``site``, no PYTHON* variables), its
    imports listed: the verdict is the hook's, and no module wrapping ``_socket`` or
    ``posix`` was imported to get it."""
    lines, ok = CASES["claim of a task not on main"](repo)
    code = ("import sys\nsys.path.append(sys.argv[1])\n"
            "from cluster.hooks.__main__ import main\nsys.exit(main(sys.argv[2:]))")
    done = subprocess.run([sys.executable, "-S", "-E", "-P", "-X", "importtime", "-c", code,
                           str(ROOT), "pre-receive"], cwd=repo.path,
                          input="".join(f"{x}\n" for x in lines),
                          env={"PATH": os.environ.get("PATH", os.defpath), "GIT_DIR": "."},
                          capture_output=True, text=True, timeout=60, check=False)
    assert server.answered == 1, done.stderr
    printed = [x for x in done.stderr.splitlines() if not x.startswith("import time:")]
    assert (done.returncode, printed) == alone(repo.path, lines)
    assert not ok
    modules = {x.split("|")[-1].strip() for x in done.stderr.splitlines()
               if x.startswith("import time:") and "|" in x}
    assert "cluster.hooks.ask" in modules  # the listing is the one parsed here
    assert not modules & WRAPPERS, f"the client imported {sorted(modules & WRAPPERS)}"


def test_without_a_server_the_script_judges_alone(repo: Repo) -> None:
    for name in ("first claim", "claim of a task not on main"):
        lines, ok = CASES[name](repo)
        done = run_script(repo.path, lines)
        assert (done.returncode, done.stderr.splitlines()) == alone(repo.path, lines)
        assert (done.returncode == 0) == ok


def test_another_release_is_not_asked_to_judge(repo: Repo, server: judged.JudgeServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judged, "__version__", "0.0.0-another")
    lines, _ = CASES["claim of a task not on main"](repo)
    done = run_script(repo.path, lines)
    assert server.answered == 0
    assert (done.returncode, done.stderr.splitlines()) == alone(repo.path, lines)


def test_rules_changed_on_disk_stop_the_server(repo: Repo, server: judged.JudgeServer) -> None:
    some = next(iter(server.code))
    server.code[some] -= 1  # as if the file had been rewritten since the server started
    lines, _ = CASES["renewal by another agent"](repo)
    done = run_script(repo.path, lines)
    assert server.answered == 0
    assert (done.returncode, done.stderr.splitlines()) == alone(repo.path, lines)
    deadline = time.monotonic() + 10
    while judged.socket_path(repo.path).exists():
        assert time.monotonic() < deadline, "a stale server kept serving"
        time.sleep(0.05)


def test_a_request_for_another_repository_is_declined(repo: Repo, tmp_path: Path,
                                                      server: judged.JudgeServer) -> None:
    other = tmp_path / "other.git"
    other.mkdir()
    request = ask.encode(str(other), ["x"], {"GIT_DIR": "."})
    assert ask.decode_reply(server.answer(request)) is None
    relative = ask.encode(str(repo.path), ["x"], {"GIT_DIR": ".",
                                                  "GIT_OBJECT_DIRECTORY": "objects/tmp"})
    assert ask.decode_reply(server.answer(relative)) is None
    assert server.answered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_get_a_verdict_or_a_refusal_never_an_exception(data: bytes) -> None:
    server = _UNBOUND
    reply = server.answer(data)
    assert ask.decode_reply(reply) is None or data.startswith(b"1\0")


@pytest.fixture(scope="module", autouse=True)
def _unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A server object that answers directly (no socket thread), for the property test."""
    global _UNBOUND
    path = tmp_path_factory.mktemp("judged") / "state.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    _UNBOUND = judged.JudgeServer(path)
    try:
        yield
    finally:
        _UNBOUND.server_close()


_UNBOUND: judged.JudgeServer


def _ask_raw(path: Path, request: bytes, uid: int | None = None) -> bytes:
    """Send ``request`` to the socket from a forked child, as ``uid`` when given."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: connect, ask, hand the reply back through the pipe
        status = 0
        try:
            os.close(read)
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(30)
                conn.connect(str(path))  # only a failure to connect fails the child
                try:
                    conn.sendall(request)
                    conn.shutdown(socket.SHUT_WR)
                    while chunk := conn.recv(65536):
                        os.write(write, chunk)
                except OSError:
                    pass  # closed by the server: no answer
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the asking child failed"
    return b"".join(chunks)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_another_user_gets_no_answer(repo: Repo, server: judged.JudgeServer) -> None:
    path = judged.socket_path(repo.path)
    assert path.stat().st_mode & 0o777 == 0o600
    lines, _ = CASES["first claim"](repo)
    request = ask.encode(str(repo.path), [f"{x}\n" for x in lines], {"GIT_DIR": "."})
    assert ask.decode_reply(_ask_raw(path, request)) == (0, [])  # the owner: a verdict
    # Even with the socket and the directories above it opened to everyone (a careless
    # operator), another user's connection is closed unanswered.
    opened = [d for d in path.parents if d != Path("/") and not d.stat().st_mode & 0o001]
    modes = {d: d.stat().st_mode & 0o7777 for d in opened}
    path.chmod(0o666)
    try:
        for d in opened:
            d.chmod(modes[d] | 0o001)
        assert _ask_raw(path, request, uid=65534) == b""
    finally:
        for d in opened:
            d.chmod(modes[d])
    assert server.answered == 1


def test_a_dead_servers_socket_is_cleared_and_a_live_one_kept(repo: Repo) -> None:
    path = judged.socket_path(repo.path)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # bound, never listening: what a SIGKILLed server leaves
    lines, ok = CASES["unsafe agent"](repo)
    done = run_script(repo.path, lines)
    assert (done.returncode, done.stderr.splitlines()) == alone(repo.path, lines)
    with judged.serving(repo.path), pytest.raises(ConfigError, match="already serves"):
        judged.JudgeServer(repo.path)
    assert not path.exists()
    assert not ok


def test_a_hostile_environment_cannot_change_what_the_hook_imports(repo: Repo,
                                                                   tmp_path: Path) -> None:
    """Variables in receive-pack's environment (PYTHONPATH, PYTHONSTARTUP...) do not reach
    the hook's interpreter: a planted `cluster` package accepting everything is not run."""
    fake = tmp_path / "planted" / "cluster"
    (fake / "hooks").mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '0.1.0'\n")
    (fake / "hooks" / "__init__.py").write_text("")
    (fake / "hooks" / "__main__.py").write_text("def main(argv):\n    return 0\n")
    (fake / "hooks" / "ask.py").write_text("def main(argv):\n    return 0\n")
    lines, ok = CASES["claim of a task not on main"](repo)
    assert not ok
    hostile = {"PYTHONPATH": str(fake.parent), "PYTHONSTARTUP": str(fake / "__init__.py")}
    done = run_script(repo.path, lines, hostile)
    assert done.returncode == 1, done.stderr
    assert (done.returncode, done.stderr.splitlines()) == alone(repo.path, lines)


def test_the_cli_serves_until_sigterm(repo: Repo) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cluster", "state", "judge", "--repo",
                             str(repo.path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    path = judged.socket_path(repo.path)
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the judge server did not start"
            time.sleep(0.05)
        lines, _ = CASES["result by another agent"](repo)
        request = ask.encode(str(repo.path), [f"{x}\n" for x in lines], {"GIT_DIR": "."})
        verdict = ask.decode_reply(_ask_raw(path, request))
        assert verdict == alone(repo.path, lines)
        assert verdict is not None and verdict[0] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert not path.exists()
    assert "judging pushes to" in out


def test_a_server_that_cannot_judge_leaves_the_push_to_the_hook(
        repo: Repo, server: judged.JudgeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git failing in the server (its environment lacks what the hook's has) is no refusal:
    the push is judged by the hook itself, and a good push is accepted."""
    from cluster.errors import GitError

    def failing(*args: object, **kwargs: object) -> tuple[int, list[str]]:
        raise GitError(["git", "cat-file"], 128, "fatal: detected dubious ownership")

    monkeypatch.setattr(judged, "verdict", failing)
    lines, ok = CASES["first claim"](repo)
    done = run_script(repo.path, lines)
    assert ok and done.returncode == 0, done.stderr
    assert server.answered == 0


def test_recorded_directories_that_moved_fall_back_to_a_usual_start(repo: Repo) -> None:
    """A release that moved leaves the recorded import path stale: the hook still judges."""
    hook = repo.path / "hooks" / "pre-receive"
    text = hook.read_text()
    recorded = next(x for x in text.splitlines() if x.startswith("CLUSTER_HOOK_PATH="))
    hook.write_text(text.replace(recorded, "CLUSTER_HOOK_PATH=/nonexistent/release"))
    for name in ("first claim", "claim naming another task"):
        lines, ok = CASES[name](repo)
        done = run_script(repo.path, lines)
        assert (done.returncode, done.stderr.splitlines()) == alone(repo.path, lines), name
        assert (done.returncode == 0) == ok
