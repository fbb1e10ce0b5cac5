"""The claude executor's tools, confined to one workspace, and their Messages API schemas.

Nothing a tool is given may freeze the agent that runs it: files are opened without blocking
and only when regular, reads and walks are bounded, and `search` (a regular expression holds
the GIL for as long as it runs) is a child process like `run_command`: both run under the
call's timeout, the attempt's cancel and its jail.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cluster.agent import search
from cluster.agent.process import Finished, child_env, run_in_group
from cluster.agent.search import MAX_MATCHES, Walk
from cluster.errors import ClusterError

if TYPE_CHECKING:
    from cluster.sandbox.jail import Jail

__all__ = ["MAX_MATCHES", "TOOL_SCHEMAS", "ToolError", "ToolResult", "Toolbox"]

MAX_LISTED = 1000
MAX_EDITED = 2_000_000  # edit_file reads the whole file: bigger ones are refused unread
SEARCH_TIMEOUT = 30.0
SEARCH_OUTPUT = 1_000_000  # bytes of a search child's output read back (MAX_MATCHES lines)
CHUNK = 1 << 20
# Never block on a FIFO, never follow a symlink swapped in after resolve().
OPEN_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symlink"),
)  # fmt: skip


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
_TIMEOUT = {"type": "number", "description": "Seconds; capped by the agent."}
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
        {
            "pattern": {"type": "string"},
            "path": _PATH,
            "glob": {"type": "string"},
            "timeout": _TIMEOUT,
        },
        ["pattern"],
    ),
    _schema(
        "run_command",
        "Run a command in the workspace: an argv array, or a string run by bash -c.",
        {
            "command": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "timeout": _TIMEOUT,
        },
        ["command"],
    ),
]


class Toolbox:
    """Runs tool calls inside ``workspace``.

    Paths are resolved (following symlinks) and must stay under the workspace; only regular
    files are read or written. The processes of run_command and search run in ``jail`` (the
    attempt's sandbox; None only with ``sandbox: off``), which bounds what they may touch, and
    are killed with everything they started when their timeout passes or ``cancel`` is set.
    """

    def __init__(
        self,
        workspace: Path,
        *,
        env: Mapping[str, str] | None = None,
        jail: Jail | None = None,
        cancel: threading.Event | None = None,
        command_timeout: float = 300.0,
        output_limit: int = 20_000,
        search_timeout: float = SEARCH_TIMEOUT,
    ) -> None:
        self.root = workspace.resolve(strict=True)
        self._env = child_env(self.root, env or {})
        self._jail = jail
        self._cancel = cancel
        self._command_timeout = command_timeout
        self._search_timeout = search_timeout
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

        ``deadline`` is a ``time.monotonic()`` value that caps command and search timeouts.
        """
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}", is_error=True)
        if not isinstance(arguments, Mapping):
            return ToolResult(f"{name}: input must be a JSON object", is_error=True)
        if self._cancel is not None and self._cancel.is_set():
            return ToolResult(f"{name}: cancelled: the attempt is stopping", is_error=True)
        try:
            return ToolResult(tool(arguments, deadline))
        except _Failed as failed:
            return ToolResult(str(failed), is_error=True)
        except ToolError as exc:
            return ToolResult(f"{name}: {exc}", is_error=True)
        except (OSError, UnicodeError) as exc:
            return ToolResult(f"{name}: {type(exc).__name__}: {exc}", is_error=True)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the workspace, or absolute inside it)."""
        if not path or "\x00" in path:
            raise ToolError(f"invalid path {path!r}")
        try:
            resolved = (self.root / path).resolve()
        except (RuntimeError, OSError) as exc:  # RuntimeError: a symlink loop
            raise ToolError(f"cannot resolve {path!r}: {exc}") from exc
        if not resolved.is_relative_to(self.root):
            raise ToolError(f"path {path!r} is outside the workspace (resolves to {resolved})")
        return resolved

    def _shown(self, path: Path) -> str:
        return str(path.relative_to(self.root)) or "."

    # -- files ----------------------------------------------------------------------------

    def _open_regular(self, path: Path, flags: int) -> tuple[int, os.stat_result]:
        """An fd of ``path`` opened with ``flags``, only if it is a regular file: a FIFO would
        block the agent's thread for ever, a device or a directory is not a file to read."""
        try:
            self._require_regular(path, os.lstat(path))
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
        fd = os.open(path, flags | OPEN_FLAGS, 0o666)
        try:
            info = os.fstat(fd)
            self._require_regular(path, info)
        except BaseException:
            os.close(fd)
            raise
        return fd, info

    def _require_regular(self, path: Path, info: os.stat_result) -> None:
        if stat.S_ISREG(info.st_mode):
            return
        kind = next((name for test, name in KINDS if test(info.st_mode)), "a special file")
        raise ToolError(f"{self._shown(path)} is {kind}, not a regular file")

    def _read_file(self, args: Mapping[str, object], _deadline: float | None) -> str:
        path = self.resolve(_text(args, "path"))
        fd, info = self._open_regular(path, os.O_RDONLY)
        try:
            data = _read_at_most(fd, self._output_limit + 1)
        finally:
            os.close(fd)
        text = data[: self._output_limit].decode("utf-8", errors="replace")
        if len(data) > self._output_limit:
            size = max(info.st_size, len(data))
            text += f"\n[truncated: showed {self._output_limit} of {size} bytes]"
        return text

    def _write_file(self, args: Mapping[str, object], _deadline: float | None) -> str:
        path = self.resolve(_text(args, "path"))
        data = _text(args, "content", allow_empty=True).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, _ = self._open_regular(path, os.O_WRONLY | os.O_CREAT)
        try:
            os.ftruncate(fd, 0)
            _write_all(fd, data)
        finally:
            os.close(fd)
        return f"wrote {len(data)} bytes to {self._shown(path)}"

    def _edit_file(self, args: Mapping[str, object], _deadline: float | None) -> str:
        path = self.resolve(_text(args, "path"))
        old = _text(args, "old_string")
        new = _text(args, "new_string", allow_empty=True)
        fd, info = self._open_regular(path, os.O_RDWR)
        try:
            if info.st_size > MAX_EDITED:
                raise ToolError(self._too_big(path, info.st_size))
            data = _read_at_most(fd, MAX_EDITED + 1)
            if len(data) > MAX_EDITED:
                raise ToolError(self._too_big(path, len(data)))
            text = data.decode("utf-8")
            count = text.count(old)
            if count != 1:
                where = "not found" if count == 0 else (
                    f"found {count} times; add context to make it unique")  # fmt: skip
                raise ToolError(f"old_string {where} in {self._shown(path)}")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            _write_all(fd, text.replace(old, new, 1).encode("utf-8"))
        finally:
            os.close(fd)
        return f"edited {self._shown(path)}"

    def _too_big(self, path: Path, size: int) -> str:
        return (f"{self._shown(path)} has {size} bytes; edit_file takes files of up to "
                f"{MAX_EDITED} bytes (use run_command for bigger ones)")  # fmt: skip

    # -- trees ----------------------------------------------------------------------------

    def _top(self, args: Mapping[str, object]) -> tuple[Path, bool]:
        """The resolved ``path`` argument and whether it is a directory (else a regular
        file); anything else is refused before a walk or a child opens it."""
        top = self.resolve(_optional_text(args, "path") or ".")
        info = os.lstat(top)
        if stat.S_ISDIR(info.st_mode):
            return top, True
        self._require_regular(top, info)
        return top, False

    def _list_files(self, args: Mapping[str, object], _deadline: float | None) -> str:
        top, is_dir = self._top(args)
        walk = Walk(str(top), _optional_text(args, "glob") or "")
        files = list(walk) if is_dir else [str(top)]
        shown = [self._shown(Path(p)) for p in files[:MAX_LISTED]]
        if len(files) > MAX_LISTED:
            shown.append(f"[truncated: {len(files) - MAX_LISTED} more files]")
        if walk.truncated:
            shown.append(f"[stopped after {walk.visited} entries: narrow path or glob]")
        return "\n".join(shown) or "(no files)"

    def _search(self, args: Mapping[str, object], deadline: float | None) -> str:
        pattern = _text(args, "pattern")
        glob = _optional_text(args, "glob") or ""
        if "\x00" in pattern or "\x00" in glob:
            raise ToolError("pattern and glob must not contain NUL characters")
        top, _ = self._top(args)
        timeout = self._timeout(self._search_timeout, args, deadline)
        python = self._jail.python if self._jail is not None else sys.executable
        argv = [python, "-I", "-S", "-c", search.source(), str(self.root), str(top), pattern,
                glob]  # fmt: skip
        finished, found, errors = self._spawn(argv, timeout, SEARCH_OUTPUT, separate=True)
        if finished.timed_out:
            raise _Failed(
                f"search timed out after {timeout:.0f}s and was stopped: simplify the pattern "
                "(nested quantifiers such as (a+)+ backtrack for ever) or narrow path/glob"
            )
        if finished.cancelled:
            raise _Failed("search cancelled: the attempt is stopping")
        if finished.returncode == search.BAD_PATTERN and errors.startswith("bad regular"):
            raise ToolError(errors.strip())
        if finished.returncode != 0:
            raise ToolError(f"failed (exit {finished.returncode}): {errors.strip()[-500:]}")
        return found

    # -- processes ------------------------------------------------------------------------

    def _run_command(self, args: Mapping[str, object], deadline: float | None) -> str:
        command = args.get("command")
        if isinstance(command, str) and command.strip():
            argv = ["bash", "-c", command]
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            argv = [str(a) for a in command]
        else:
            raise ToolError("command must be a non-empty string or array of strings")
        timeout = self._timeout(self._command_timeout, args, deadline)
        finished, text, _ = self._spawn(argv, timeout, self._output_limit)
        if finished.timed_out:
            raise _Failed(f"timed out after {timeout:.0f}s; process group killed\n{text}")
        if finished.cancelled:
            raise _Failed(f"cancelled: the attempt is stopping; process group killed\n{text}")
        report = f"exit {finished.returncode}\n{text}"
        if finished.returncode != 0:
            raise _Failed(report)
        return report

    def _timeout(self, limit: float, args: Mapping[str, object], deadline: float | None) -> float:
        """``limit``, lowered by the call's own ``timeout`` and by the attempt's deadline."""
        requested = args.get("timeout")
        if isinstance(requested, int | float) and not isinstance(requested, bool) and requested > 0:
            limit = min(limit, float(requested))
        if deadline is not None:
            limit = min(limit, deadline - time.monotonic())
        return limit

    def _spawn(
        self, argv: Sequence[str], timeout: float, limit: int, *, separate: bool = False
    ) -> tuple[Finished, str, str]:
        """Run ``argv`` in the workspace (in the jail); its output, and its stderr when
        ``separate``, clipped to ``limit`` bytes. Files, not pipes: a background child holding
        a pipe open would block the read."""
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
            finished = run_in_group(
                argv, cwd=self.root, env=self._env, timeout=timeout, output=output,
                errors=errors if separate else None, cancel=self._cancel, jail=self._jail,
            )  # fmt: skip
            return finished, _clipped(output, limit), _clipped(errors, limit)


class _Failed(Exception):
    """A command or search ran but failed; its report is the tool result, marked as an error."""


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _clipped(file: BinaryIO, limit: int) -> str:
    """Head and tail of what a process wrote (errors tend to be at the end), reading at most
    ``limit`` bytes of it whatever its size."""
    size = os.fstat(file.fileno()).st_size
    file.seek(0)
    if size <= limit:
        return file.read(limit).decode("utf-8", errors="replace")
    half = limit // 2
    head = file.read(half)
    file.seek(size - half)
    tail = file.read(half)
    return (
        head.decode("utf-8", errors="replace")
        + f"\n[... {size - 2 * half} bytes truncated ...]\n"
        + tail.decode("utf-8", errors="replace")
    )


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
