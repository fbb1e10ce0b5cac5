"""The OpenSSH client, for what paramiko does slowly: bulk bytes, and git's own ssh.

paramiko packs and encrypts every 32 KiB packet under one process's GIL; ``ssh`` is one C
process per host, on every core (a release's 26 MB of wheels to 10 hosts at once: 4.5 s and
3.4 s of CPU over paramiko's SFTP, 3.0 s and 2.1 s over ``ssh``). Its options are this module's
alone, so every OpenSSH command the toolkit builds checks host keys the same strict way the
paramiko connections do (cluster.transport.ssh): only ``known_hosts`` decides, no
``~/.ssh/config``, no agent, no password prompt.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cluster.errors import HostError, HostKeyMismatch

CONNECT_TIMEOUT = 10
ALIVE_INTERVAL = 15  # seconds between keep-alives; a host that answers none of 4 is gone
CHANGED = "REMOTE HOST IDENTIFICATION HAS CHANGED"


def ssh_options(
    key_file: Path, known_hosts: Path, connect_timeout: int = CONNECT_TIMEOUT
) -> list[str]:
    """``ssh``'s arguments before the destination: this key, these host keys, nothing else."""
    return [
        "-F", "/dev/null",  # no ssh_config: a run behaves the same on every machine
        "-i", str(key_file),
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none", "-o", f"ConnectTimeout={connect_timeout}",
        "-o", f"ServerAliveInterval={ALIVE_INTERVAL}", "-o", "ServerAliveCountMax=4",
    ]  # fmt: skip


def ssh_command(key_file: Path, known_hosts: Path, connect_timeout: int = CONNECT_TIMEOUT) -> str:
    """The same as one shell word string: ``GIT_SSH_COMMAND`` (git adds host and command)."""
    return shlex.join(["ssh", *ssh_options(key_file, known_hosts, connect_timeout)])


@dataclass(frozen=True)
class SshTarget:
    """One host as ``ssh`` reaches it."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: int = CONNECT_TIMEOUT

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def argv(self, remote: list[str]) -> list[str]:
        """``ssh`` running ``remote`` (quoted here, once, for the remote shell)."""
        options = ssh_options(self.key_file, self.known_hosts, self.connect_timeout)
        return ["ssh", *options, "-p", str(self.port), "-l", self.user, "--", self.host,
                shlex.join(remote)]  # fmt: skip


def feed(target: SshTarget, remote: list[str], write: Callable[[IO[bytes]], object],
         timeout: float) -> str:  # fmt: skip
    """Run ``remote`` on the host with ``write`` filling its standard input; its stdout.

    HostError when the connection fails (HostKeyMismatch for a changed key), the command exits
    non-zero (its stderr's last lines say why) or the whole exchange outlasts ``timeout``.
    """
    if not remote:
        raise ValueError("remote argv must not be empty")
    proc = subprocess.Popen(target.argv(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    streams = {"out": proc.stdout, "err": proc.stderr}
    got: dict[str, bytes] = {}
    readers = [threading.Thread(target=_drain, args=(stream, got, key), daemon=True)
               for key, stream in streams.items()]  # fmt: skip
    for reader in readers:
        reader.start()
    broken = False
    try:
        assert proc.stdin is not None
        try:
            write(proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            broken = True  # the far end stopped reading: its exit status and stderr say why
        code = proc.wait()
        for reader in readers:
            reader.join()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if expired.is_set():
        raise HostError(target.label, f"timed out: {remote[0]} still running after {timeout:.0f}s")
    text = got.get("err", b"").decode("utf-8", "replace")
    if code == 255:
        raise _connect_error(target, text)
    if code != 0 or broken:
        tail = " | ".join(text.strip().splitlines()[-5:]) or "(no stderr)"
        said = f"exited {code}" if code != 0 else "stopped reading its input"
        raise HostError(target.label, f"{remote[0]} {said}: {tail}")
    return got.get("out", b"").decode("utf-8", "replace")


def _drain(stream: IO[bytes] | None, into: dict[str, bytes], key: str) -> None:
    into[key] = stream.read() if stream is not None else b""


def _connect_error(target: SshTarget, stderr: str) -> HostError:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if any(CHANGED in line for line in lines):
        text = f"host key changed: {target.known_hosts} has another key (ssh refused it)"
        return HostKeyMismatch(target.label, text)
    if any("Host key verification failed" in line for line in lines):
        text = f"host key not in {target.known_hosts} (unknown host; ssh refused it)"
        return HostError(target.label, text)
    return HostError(target.label, f"ssh: {lines[-1] if lines else 'exited 255'}")
