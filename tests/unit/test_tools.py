"""The claude executor's tools stay inside the workspace and kill what they start."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.config import SandboxConfig
from cluster.agent.tools import MAX_MATCHES, TOOL_SCHEMAS, Toolbox, ToolResult
from cluster.sandbox.jail import Jail
from cluster.sandbox.sandboxes import Sandboxes
from tests.helpers import poll


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs; a zombie counts as gone (our PID 1 may not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until_gone(pid: int, deadline_s: float = 10.0) -> None:
    poll(lambda: process_gone(pid), deadline_s, f"process {pid} to be gone", interval=0.02)


def marked(marker: str) -> list[int]:
    """Live processes of this host whose command line holds ``marker`` (in a jail or not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and not process_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def returns_within(call: Callable[[], ToolResult], deadline_s: float = 30.0) -> ToolResult:
    """Run ``call`` in a thread; fail loudly when it has not returned by the deadline."""
    box: list[ToolResult | BaseException] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        pytest.fail(f"tool call still blocked after {deadline_s}s")
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def unblock(fifo: Path) -> None:
    """Release a thread stuck opening ``fifo`` (today's tools), whichever end it waits for."""
    for flags in (os.O_WRONLY, os.O_RDONLY):
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, flags | os.O_NONBLOCK))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def tools(workspace: Path) -> Toolbox:
    return Toolbox(workspace, output_limit=2000, command_timeout=30)


@pytest.fixture
def jail(tmp_path: Path, workspace: Path) -> Jail:
    made = Sandboxes(SandboxConfig(), tmp_path / "jails", protected=()).jail("attempt", workspace)
    assert made is not None
    return made


def test_schemas_name_every_tool(tools: Toolbox) -> None:
    names = {s["name"] for s in TOOL_SCHEMAS}
    assert names == {"read_file", "write_file", "edit_file", "list_files", "search", "run_command"}
    for schema in TOOL_SCHEMAS:
        input_schema: Any = schema["input_schema"]
        assert input_schema["type"] == "object"


def test_write_then_read(tools: Toolbox, workspace: Path) -> None:
    result = tools.call("write_file", {"path": "src/app.py", "content": "print('hi')\n"})
    assert not result.is_error
    assert (workspace / "src/app.py").read_text() == "print('hi')\n"
    assert tools.call("read_file", {"path": "src/app.py"}).content == "print('hi')\n"


def test_dotdot_escape_is_refused(tools: Toolbox, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret")
    result = tools.call("read_file", {"path": "../secret.txt"})
    assert result.is_error
    assert "outside the workspace" in result.content
    assert tools.call("write_file", {"path": "a/../../x.txt", "content": "x"}).is_error
    assert not (tmp_path / "x.txt").exists()


def test_absolute_paths(tools: Toolbox, workspace: Path) -> None:
    assert tools.call("read_file", {"path": "/etc/passwd"}).is_error
    (workspace / "in.txt").write_text("inside")
    assert tools.call("read_file", {"path": str(workspace / "in.txt")}).content == "inside"


def test_symlink_escape_is_refused(tools: Toolbox, workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "key").write_text("private")
    (workspace / "link").symlink_to(outside)
    (workspace / "file-link").symlink_to(outside / "key")

    assert tools.call("read_file", {"path": "link/key"}).is_error
    assert tools.call("read_file", {"path": "file-link"}).is_error
    assert tools.call("write_file", {"path": "link/new", "content": "x"}).is_error
    assert tools.call(
        "edit_file", {"path": "file-link", "old_string": "private", "new_string": "owned"}
    ).is_error
    assert not (outside / "new").exists()
    assert (outside / "key").read_text() == "private"
    assert "key" not in tools.call("list_files", {}).content.split("\n")


def test_edit_needs_a_unique_match(tools: Toolbox, workspace: Path) -> None:
    (workspace / "f.py").write_text("a = 1\nb = 1\n")
    assert not tools.call(
        "edit_file", {"path": "f.py", "old_string": "a = 1", "new_string": "a = 2"}
    ).is_error
    assert (workspace / "f.py").read_text() == "a = 2\nb = 1\n"
    missing = tools.call("edit_file", {"path": "f.py", "old_string": "zzz", "new_string": ""})
    assert missing.is_error and "not found" in missing.content
    twice = tools.call("edit_file", {"path": "f.py", "old_string": "= ", "new_string": "="})
    assert twice.is_error and "2 times" in twice.content
    assert (workspace / "f.py").read_text() == "a = 2\nb = 1\n"


def test_search_and_list(tools: Toolbox, workspace: Path) -> None:
    (workspace / "pkg").mkdir()
    (workspace / "pkg/a.py").write_text("def alpha():\n    return 1\n")
    (workspace / "pkg/b.txt").write_text("alpha beta\n")
    (workspace / ".git").mkdir()
    (workspace / ".git/config").write_text("alpha\n")

    found = tools.call("search", {"pattern": r"alph\w", "glob": "*.py"}).content
    assert found == "pkg/a.py:1: def alpha():"
    assert tools.call("list_files", {"path": "pkg"}).content == "pkg/a.py\npkg/b.txt"
    assert ".git" not in tools.call("list_files", {}).content
    bad = tools.call("search", {"pattern": "("})
    assert bad.is_error and "regular expression" in bad.content


def test_search_output_is_bounded(tools: Toolbox, workspace: Path) -> None:
    (workspace / "big.txt").write_text("hit\n" * (MAX_MATCHES + 50))
    lines = tools.call("search", {"pattern": "hit"}).content.splitlines()
    assert len(lines) == MAX_MATCHES + 1
    assert "stopped" in lines[-1]


def test_run_command_string_argv_and_failure(tools: Toolbox, workspace: Path) -> None:
    ok = tools.call("run_command", {"command": "pwd; echo out; echo err >&2"})
    assert not ok.is_error
    assert ok.content.splitlines() == ["exit 0", str(workspace), "out", "err"]
    assert tools.call("run_command", {"command": ["printf", "%s", "a b"]}).content == "exit 0\na b"
    failed = tools.call("run_command", {"command": "exit 4"})
    assert failed.is_error and failed.content.startswith("exit 4")
    assert tools.call("run_command", {"command": []}).is_error


def test_run_command_output_is_truncated(tools: Toolbox) -> None:
    result = tools.call(
        "run_command", {"command": "head -c 100000 /dev/zero | tr '\\0' x; echo END"}
    )
    assert len(result.content) < 2200
    assert "truncated" in result.content
    assert result.content.rstrip().endswith("END")


def test_command_timeout_kills_the_whole_group(tools: Toolbox, workspace: Path) -> None:
    script = "sleep 300 & echo $! > child.pid; wait"
    result = tools.call("run_command", {"command": script, "timeout": 1})
    assert result.is_error and "timed out" in result.content
    wait_until_gone(int((workspace / "child.pid").read_text()))


def test_deadline_caps_the_command(tools: Toolbox) -> None:
    result = tools.call("run_command", {"command": "sleep 300"}, deadline=time.monotonic() + 0.5)
    assert result.is_error and "timed out" in result.content


def test_agent_environment_does_not_leak(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-leak")
    tools = Toolbox(workspace, env={"TASK_VAR": "given"})
    out = tools.call("run_command", {"command": "echo ${ANTHROPIC_API_KEY:-none} $TASK_VAR $HOME"})
    assert out.content.splitlines()[1] == f"none given {workspace}"
    assert "ANTHROPIC_API_KEY" in os.environ


def test_bad_calls_are_errors_not_exceptions(tools: Toolbox) -> None:
    assert tools.call("rm_rf", {}).is_error
    assert tools.call("read_file", ["not", "an", "object"]).is_error
    assert tools.call("read_file", {"path": 3}).is_error
    assert tools.call("read_file", {"path": "missing.txt"}).is_error
    assert tools.call("read_file", {"path": "."}).is_error


# -- hostile input: nothing a tool is given may freeze the agent ---------------------------------


@pytest.mark.timeout(120)  # in-process, this regex holds the GIL for ever: fail, do not hang
@pytest.mark.parametrize("jailed", [False, True], ids=["unjailed", "jailed"])
def test_a_catastrophic_regex_times_out_in_a_child(
    workspace: Path, jail: Jail, jailed: bool
) -> None:
    tools = Toolbox(workspace, jail=jail) if jailed else Toolbox(workspace)
    (workspace / "evil.txt").write_text("a" * 64 + "!\n")
    marker = f"ccc-{uuid.uuid4().hex}"
    seen: set[int] = set()
    rounds = [0]
    done = threading.Event()

    def watch() -> None:  # pure Python: it runs only while nobody holds the GIL
        while not done.is_set():
            seen.update(marked(marker))
            rounds[0] += 1

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    before = rounds[0]
    try:
        result = tools.call(
            "search", {"pattern": f"(a+)+$(?#{marker})"}, deadline=time.monotonic() + 3
        )
        during = rounds[0] - before
    finally:
        done.set()
        watcher.join(10)
    assert result.is_error and result.content.startswith("search timed out"), result
    assert during > 10, "the watcher thread made no progress: the search held the GIL"
    assert seen, "the search never ran as a child process"
    for pid in seen:
        wait_until_gone(pid)
    assert marked(marker) == []


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("read_file", {"path": "pipe"}, "FIFO"),
        ("edit_file", {"path": "pipe", "old_string": "a", "new_string": "b"}, "FIFO"),
        ("write_file", {"path": "pipe", "content": "x"}, "FIFO"),
        ("search", {"pattern": "x", "path": "pipe"}, "FIFO"),
        ("list_files", {"path": "pipe"}, "FIFO"),
        ("search", {"pattern": "x"}, "code.py:1: x = 1"),
        ("list_files", {}, "code.py"),
    ],
)
def test_a_fifo_is_refused_or_skipped_without_blocking(
    tools: Toolbox, workspace: Path, name: str, args: dict[str, Any], expected: str
) -> None:
    os.mkfifo(workspace / "pipe")
    (workspace / "code.py").write_text("x = 1\n")
    try:
        result = returns_within(lambda: tools.call(name, args))
    finally:
        unblock(workspace / "pipe")
    if expected == "FIFO":
        assert result.is_error and "pipe is a FIFO, not a regular file" in result.content, result
    else:
        assert result == ToolResult(expected)


def test_a_sparse_3gib_file_is_shown_by_its_head(tools: Toolbox, workspace: Path) -> None:
    huge = workspace / "huge.log"
    huge.write_bytes(b"first line\n")
    os.truncate(huge, 3 << 30)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = returns_within(lambda: tools.call("read_file", {"path": "huge.log"}))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib) / 1024
    assert grown_mb < 200, f"read_file read the whole file: peak RSS grew by {grown_mb:.0f} MB"
    assert not result.is_error
    assert result.content.startswith("first line\n")
    assert result.content.endswith(f"[truncated: showed 2000 of {3 << 30} bytes]")
    (workspace / "small.log").write_text("first line too\n")
    found = returns_within(lambda: tools.call("search", {"pattern": "first"}))
    assert found == ToolResult("small.log:1: first line too")  # too big to search: skipped
    edit = {"path": "huge.log", "old_string": "first", "new_string": "last"}
    refused = returns_within(lambda: tools.call("edit_file", edit))
    assert refused.is_error and f"has {3 << 30} bytes" in refused.content
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib) / 1024
    assert grown_mb < 200, f"edit_file read the whole file: peak RSS grew by {grown_mb:.0f} MB"


def test_symlink_loops_and_links_out_are_not_followed(
    tools: Toolbox, workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "key.txt").write_text("private needle\n")
    (workspace / "loop-a").symlink_to(workspace / "loop-b")
    (workspace / "loop-b").symlink_to(workspace / "loop-a")
    (workspace / "up").symlink_to(workspace)  # a directory loop
    (workspace / "out").symlink_to(outside)
    (workspace / "out-key.txt").symlink_to(outside / "key.txt")
    (workspace / "mine.txt").write_text("my needle\n")

    assert returns_within(lambda: tools.call("list_files", {})) == ToolResult("mine.txt")
    found = returns_within(lambda: tools.call("search", {"pattern": "needle"}))
    assert found == ToolResult("mine.txt:1: my needle")
    for name, args in [
        ("read_file", {"path": "loop-a"}),
        ("read_file", {"path": "out-key.txt"}),
        ("list_files", {"path": "loop-b"}),
        ("list_files", {"path": "out"}),
        ("search", {"pattern": "needle", "path": "loop-a"}),
        ("search", {"pattern": "needle", "path": "out"}),
    ]:
        result = returns_within(lambda n=name, a=args: tools.call(n, a))  # type: ignore[misc]
        assert result.is_error and "private" not in result.content, (name, args, result)


def test_a_deep_tree_is_walked_to_a_bound(tools: Toolbox, workspace: Path) -> None:
    deep = workspace
    for _ in range(200):  # pytest's own clean-up recurses: not deeper than it can delete
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.txt").write_text("needle\n")
    (workspace / "top.txt").write_text("needle\n")
    listing = returns_within(lambda: tools.call("list_files", {}))
    assert not listing.is_error
    assert listing.content.splitlines()[0] == "top.txt"
    assert "bottom.txt" not in listing.content and "stopped after" in listing.content
    found = returns_within(lambda: tools.call("search", {"pattern": "needle"}))
    assert found.content.splitlines()[0] == "top.txt:1: needle"
    assert "stopped after" in found.content


def test_run_command_in_a_jail_is_sealed(
    workspace: Path, tmp_path: Path, jail: Jail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCC_AGENT_SECRET", "agent-only-value")
    (tmp_path / "secret.txt").write_text("outside the work tree")
    tools = Toolbox(workspace, jail=jail, command_timeout=60)
    environ = tools.call("run_command", {"command": f"cat /proc/{os.getpid()}/environ"})
    assert environ.is_error and "agent-only-value" not in environ.content
    outside = tools.call("run_command", {"command": ["cat", str(tmp_path / "secret.txt")]})
    assert outside.is_error and "outside the work tree" not in outside.content
    (workspace / "code.py").write_text("needle = 1\n")
    assert tools.call("search", {"pattern": "needle"}) == ToolResult("code.py:1: needle = 1")


def test_a_setsid_background_process_dies_with_the_jailed_command(
    workspace: Path, jail: Jail
) -> None:
    tools = Toolbox(workspace, jail=jail, command_timeout=60)
    marker = f"ccc-{uuid.uuid4().hex}"
    script = (
        f"setsid bash -c 'exec -a {marker} sleep 1000' & "
        "until [ -e release ]; do sleep 0.05; done; echo released"
    )
    box: list[ToolResult] = []
    args = {"command": script}
    call = threading.Thread(target=lambda: box.append(tools.call("run_command", args)))
    call.start()
    try:
        deadline = time.monotonic() + 30
        while not (pids := marked(marker)):
            if time.monotonic() > deadline or not call.is_alive():
                pytest.fail("the background process never started")
            time.sleep(0.02)
    finally:
        (workspace / "release").touch()
        call.join(60)
    assert not call.is_alive()
    assert box == [ToolResult("exit 0\nreleased\n")]
    for pid in pids:
        wait_until_gone(pid)
