"""The claude executor's tools stay inside the workspace and kill what they start."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from cluster.agent.tools import MAX_MATCHES, TOOL_SCHEMAS, Toolbox


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs; a zombie counts as gone (our PID 1 may not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until_gone(pid: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not process_gone(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} still alive after {deadline_s}s")
        time.sleep(0.02)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def tools(workspace: Path) -> Toolbox:
    return Toolbox(workspace, output_limit=2000, command_timeout=30)


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
