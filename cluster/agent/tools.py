"""The claude executor's tools, confined to one workspace, and their Messages API schemas."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from cluster.agent.process import child_env, run_in_group
from cluster.errors import ClusterError

SKIPPED_DIRS = frozenset({".git"})
MAX_LISTED = 1000
MAX_MATCHES = 200
MAX_LINE = 300
MAX_SEARCHED_FILE = 2_000_000


class ToolError(ClusterError):
    """A tool call the model got wrong; its message goes back to the model, is_error=true."""


@dataclass(frozen=True)
class ToolResult:
    """The text of one tool_result block."""

    content: str
    is_error: bool = False


def _schema(
    name: str, description: str, props: dict[str, object], required: list[str]
) -> dict[str, object]:
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": props, "required": required},
    }


_PATH = {"type": "string", "description": "Path relative to the workspace root."}
TOOL_SCHEMAS: list[dict[str, object]] = [
    _schema("read_file", "Read a text file of the workspace.", {"path": _PATH}, ["path"]),
    _schema(
        "write_file",
        "Create or overwrite a file of the workspace (parent directories are created).",
        {"path": _PATH, "content": {"type": "string"}},
        ["path", "content"],
    ),
    _schema(
        "edit_file",
        "Replace old_string by new_string in a file; old_string must occur exactly once.",
        {"path": _PATH, "old_string": {"type": "string"}, "new_string": {"type": "string"}},
        ["path", "old_string", "new_string"],
    ),
    _schema(
        "list_files",
        "List files under a directory of the workspace, recursively (.git is skipped).",
        {"path": _PATH, "glob": {"type": "string", "description": "Optional name filter."}},
        [],
    ),
    _schema(
        "search",
        "Search files for a Python regular expression; prints path:line: text.",
        {"pattern": {"type": "string"}, "path": _PATH, "glob": {"type": "string"}},
        ["pattern"],
    ),
    _schema(
        "run_command",
        "Run a command in the workspace: an argv array, or a string run by bash -c.",
        {
            "command": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "timeout": {"type": "number", "description": "Seconds; capped by the agent."},
        },
        ["command"],
    ),
]


class Toolbox:
    """Runs tool calls inside ``workspace``.

    Paths are resolved (following symlinks) and must stay under the workspace. run_command only
    starts in the workspace: what a command may touch is bounded by the host's sandbox (systemd
    hardening or the container), not by this class.
    """

    def __init__(
        self,
        workspace: Path,
        *,
        env: Mapping[str, str] | None = None,
        command_timeout: float = 300.0,
        output_limit: int = 20_000,
    ) -> None:
        self.root = workspace.resolve(strict=True)
        self._env = child_env(self.root, env or {})
        self._command_timeout = command_timeout
        self._output_limit = output_limit
        self._tools: dict[str, Callable[[Mapping[str, object], float | None], str]] = {
            "read_file": self._read_file,
            "write_file": self._write_file,
            "edit_file": self._edit_file,
            "list_files": self._list_files,
            "search": self._search,
            "run_command": self._run_command,
        }

    def call(self, name: str, arguments: object, *, deadline: float | None = None) -> ToolResult:
        """Run one tool; every failure becomes an error result for the model, never an exception.

        ``deadline`` is a ``time.monotonic()`` value that caps command timeouts.
        """
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}", is_error=True)
        if not isinstance(arguments, Mapping):
            return ToolResult(f"{name}: input must be a JSON object", is_error=True)
        try:
            return ToolResult(tool(arguments, deadline))
        except _CommandFailed as failed:
            return ToolResult(str(failed), is_error=True)
        except ToolError as exc:
            return ToolResult(f"{name}: {exc}", is_error=True)
        except (OSError, UnicodeError) as exc:
            return ToolResult(f"{name}: {type(exc).__name__}: {exc}", is_error=True)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the workspace, or absolute inside it)."""
        if not path or "\x00" in path:
            raise ToolError(f"invalid path {path!r}")
        resolved = (self.root / path).resolve()
        if not resolved.is_relative_to(self.root):
            raise ToolError(f"path {path!r} is outside the workspace (resolves to {resolved})")
        return resolved

    def _shown(self, path: Path) -> str:
        return str(path.relative_to(self.root)) or "."

    def _read_file(self, args: Mapping[str, object], _deadline: float | None) -> str:
        path = self.resolve(_text(args, "path"))
        data = path.read_bytes()
        text = data[: self._output_limit].decode("utf-8", errors="replace")
        if len(data) > self._output_limit:
            text += f"\n[truncated: showed {self._output_limit} of {len(data)} bytes]"
        return text

    def _write_file(self, args: Mapping[str, object], _deadline: float | None) -> str:
        path = self.resolve(_text(args, "path"))
        content = _text(args, "content", allow_empty=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return f"wrote {len(content.encode())} bytes to {self._shown(path)}"

    def _edit_file(self, args: Mapping[str, object], _deadline: float | None) -> str:
        path = self.resolve(_text(args, "path"))
        old = _text(args, "old_string")
        new = _text(args, "new_string", allow_empty=True)
        text = path.read_text(encoding="utf-8")
        count = text.count(old)
        if count != 1:
            where = (
                "not found" if count == 0 else f"found {count} times; add context to make it unique"
            )
            raise ToolError(f"old_string {where} in {self._shown(path)}")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return f"edited {self._shown(path)}"

    def _walk(self, top: Path, glob: str | None) -> list[Path]:
        if top.is_file():
            return [top]
        found: list[Path] = []
        # followlinks=False: a symlinked directory could lead out of the workspace.
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            for filename in sorted(filenames):
                if glob is None or fnmatch(filename, glob):
                    found.append(Path(dirpath, filename))
        return found

    def _list_files(self, args: Mapping[str, object], _deadline: float | None) -> str:
        top = self.resolve(_optional_text(args, "path") or ".")
        files = self._walk(top, _optional_text(args, "glob"))
        shown = [self._shown(p) for p in files[:MAX_LISTED]]
        if len(files) > MAX_LISTED:
            shown.append(f"[truncated: {len(files) - MAX_LISTED} more files]")
        return "\n".join(shown) or "(no files)"

    def _search(self, args: Mapping[str, object], _deadline: float | None) -> str:
        try:
            regex = re.compile(_text(args, "pattern"))
        except re.error as exc:
            raise ToolError(f"bad regular expression: {exc}") from exc
        top = self.resolve(_optional_text(args, "path") or ".")
        matches: list[str] = []
        for path in self._walk(top, _optional_text(args, "glob")):
            if path.is_symlink() or path.stat().st_size > MAX_SEARCHED_FILE:
                continue
            data = path.read_bytes()
            if b"\x00" in data[:8192]:
                continue  # binary
            for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if regex.search(line):
                    matches.append(f"{self._shown(path)}:{number}: {line[:MAX_LINE]}")
                    if len(matches) >= MAX_MATCHES:
                        return "\n".join([*matches, f"[stopped at {MAX_MATCHES} matches]"])
        return "\n".join(matches) or "(no matches)"

    def _run_command(self, args: Mapping[str, object], deadline: float | None) -> str:
        command = args.get("command")
        if isinstance(command, str) and command.strip():
            argv = ["bash", "-c", command]
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            argv = [str(a) for a in command]
        else:
            raise ToolError("command must be a non-empty string or array of strings")
        timeout = self._command_timeout
        requested = args.get("timeout")
        if isinstance(requested, int | float) and not isinstance(requested, bool) and requested > 0:
            timeout = min(timeout, float(requested))
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        with tempfile.TemporaryFile() as output:
            # A file, not a pipe: a background child holding a pipe open would block the read.
            finished = run_in_group(
                argv, cwd=self.root, env=self._env, timeout=timeout, output=output
            )
            output.seek(0)
            text = self._clip(output.read())
        if finished.timed_out:
            raise _CommandFailed(f"timed out after {timeout:.0f}s; process group killed\n{text}")
        report = f"exit {finished.returncode}\n{text}"
        if finished.returncode != 0:
            raise _CommandFailed(report)
        return report

    def _clip(self, data: bytes) -> str:
        """Head and tail of a long output: errors tend to be at the end."""
        if len(data) <= self._output_limit:
            return data.decode("utf-8", errors="replace")
        half = self._output_limit // 2
        skipped = len(data) - 2 * half
        return (
            data[:half].decode("utf-8", errors="replace")
            + f"\n[... {skipped} bytes truncated ...]\n"
            + data[-half:].decode("utf-8", errors="replace")
        )


class _CommandFailed(Exception):
    """A command ran but failed; its report is the tool result, marked as an error."""


def _text(args: Mapping[str, object], key: str, *, allow_empty: bool = False) -> str:
    value = args.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ToolError(f"{key!r} must be a non-empty string")
    return value


def _optional_text(args: Mapping[str, object], key: str) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ToolError(f"{key!r} must be a string")
    return value
