"""The one exception root of the project and the subclasses that say what went wrong where."""

from __future__ import annotations


class ClusterError(Exception):
    """Base of every error this project raises on purpose; its message is meant for people."""

    exit_code: int = 1


class ConfigError(ClusterError):
    """A settings file, flag or inventory entry is wrong."""

    exit_code = 2


class ValidationError(ClusterError):
    """A document (task, inventory, config) does not match its schema.

    ``where`` names the file (or other source) and ``problems`` lists one line per wrong field.
    """

    exit_code = 2

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        super().__init__(f"{where}: " + "; ".join(problems))


class GitError(ClusterError):
    """A git command failed; ``command`` and ``stderr`` say which and why."""

    def __init__(self, command: list[str], returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr.strip()
        shown = " ".join(command[:4])
        super().__init__(f"git failed ({shown} ...): exit {returncode}: {self.stderr}")


class RemoteUnavailable(ClusterError):
    """The state repo's remote cannot be reached right now; callers back off and retry."""


class HostError(ClusterError):
    """An operation on one host failed; ``host`` names it."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"{host}: {message}")


class HostKeyMismatch(HostError):
    """The host presented a key other than the one recorded for it."""


class SecretMissing(ClusterError):
    """A secret the operation needs is not set; the message says where it was looked for."""

    exit_code = 2
