"""Opens Fabric connections with strict host key checking and runs quoted argv lists."""

from __future__ import annotations

import shlex
from pathlib import Path

from fabric import Config, Connection
from paramiko.config import SSHConfig

from cluster.errors import HostError
from cluster.transport.errors import translated
from cluster.transport.hostkeys import install_policy

CONNECT_TIMEOUT = 10.0
RUN_TIMEOUT = 300.0


def connect(
    host: str,
    port: int,
    user: str,
    key_file: Path,
    known_hosts: Path,
    accept_new: bool = False,
    timeout: float = CONNECT_TIMEOUT,
) -> Connection:
    """Open an SSH connection whose host key must match ``known_hosts``.

    Fabric's default AutoAddPolicy is replaced: unknown keys are refused unless
    ``accept_new``; a changed key raises HostKeyMismatch. Neither ~/.ssh/config nor the
    agent nor ~/.ssh keys take part, so a run behaves the same on every machine. One
    connection per host per run; do not share it across threads.
    """
    # An explicit, empty SSHConfig and lazy=True: no ssh_config or fabric.yaml files are read.
    config = Config(lazy=True, ssh_config=SSHConfig())
    conn = Connection(
        host,
        user=user,
        port=port,
        config=config,
        connect_kwargs={
            "key_filename": [str(key_file)],
            "look_for_keys": False,
            "allow_agent": False,
            "timeout": timeout,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
        },
    )
    install_policy(conn.client, known_hosts, accept_new)
    try:
        with translated(_label(conn), known_hosts):
            conn.open()
    except HostError:
        conn.close()  # ends paramiko's transport thread and socket of the failed attempt
        raise
    return conn


def run(
    conn: Connection, argv: list[str], check: bool = True, timeout: float = RUN_TIMEOUT
) -> tuple[int, str, str]:
    """Run ``argv`` (quoted here, once) on the host; return (exit code, stdout, stderr).

    With ``check`` a non-zero exit raises HostError carrying the command's name and stderr.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    host = _label(conn)
    with translated(host):
        result = conn.run(
            shlex.join(argv), hide=True, warn=True, timeout=timeout, in_stream=False, pty=False
        )
    code, out, err = int(result.exited), str(result.stdout), str(result.stderr)
    if check and code != 0:
        tail = err.strip().splitlines()[-5:]
        raise HostError(host, f"{argv[0]} exited {code}: {' | '.join(tail) or '(no stderr)'}")
    return code, out, err


def _label(conn: Connection) -> str:
    return f"{conn.user}@{conn.host}:{conn.port}"


def put_bytes(conn: Connection, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` over SFTP; the mode is set before any byte is written."""
    with translated(_label(conn)):
        sftp = conn.sftp()
        with sftp.open(path, "wb") as handle:
            handle.chmod(mode)
            handle.set_pipelined(True)
            handle.write(data)


def get_bytes(conn: Connection, path: str) -> bytes | None:
    """The file at ``path``, or None when there is none."""
    with translated(_label(conn)):
        sftp = conn.sftp()
        try:
            with sftp.open(path, "rb") as handle:
                return bytes(handle.read())
        except FileNotFoundError:
            return None
