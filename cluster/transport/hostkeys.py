"""Host key policies: reject keys not in known_hosts, or accept new ones when asked."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import paramiko


class UnknownHostKey(paramiko.SSHException):
    """The host offered a key that known_hosts does not list for it."""

    def __init__(self, hostname: str, key_type: str, fingerprint: str) -> None:
        super().__init__(f"{hostname} offered unknown {key_type} key {fingerprint}")
        self.hostname = hostname
        self.key_type = key_type
        self.fingerprint = fingerprint


class RejectUnknown(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, raising an exception that says which key it rejected."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise UnknownHostKey(hostname, key.get_name(), key.fingerprint)


def install_policy(client: paramiko.SSHClient, known_hosts: Path, accept_new: bool) -> None:
    """Load only ``known_hosts`` (never ~/.ssh) and set the policy for keys missing from it.

    A key that differs from the recorded one always fails (paramiko raises
    BadHostKeyException before any policy is asked). With ``accept_new`` a host with no entry
    is trusted on first use and appended to ``known_hosts``, like OpenSSH's accept-new.
    """
    if accept_new and not known_hosts.exists():
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        known_hosts.touch(mode=0o644)
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    policy = paramiko.AutoAddPolicy() if accept_new else RejectUnknown()
    client.set_missing_host_key_policy(policy)
