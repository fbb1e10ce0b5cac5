"""Client key pairs and known_hosts text (keys made by ssh-keygen): for test hosts and the Compose
cluster's state service."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from cluster.errors import ClusterError

# paramiko offers the first type it finds recorded for a host; ed25519 is the one to prefer.
KEY_TYPE_ORDER = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-rsa")
HOST_KEY_FILES = tuple(f"/etc/ssh/ssh_host_{kind}_key.pub" for kind in ("ed25519", "ecdsa", "rsa"))


def generate_keypair(private_key: Path, comment: str) -> None:
    """Create a fresh passphrase-less ed25519 key pair, replacing any old one."""
    if shutil.which("ssh-keygen") is None:
        raise ClusterError("ssh-keygen is not installed (package openssh-client): run ./setup.sh")
    for old in (private_key, private_key.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    private_key.parent.mkdir(parents=True, exist_ok=True)
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private_key)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise ClusterError(f"ssh-keygen failed: {done.stderr.strip()}")


def parse_public_keys(text: str) -> list[tuple[str, str]]:
    """(type, base64) pairs from ``*.pub`` text, comments dropped, preferred type first."""
    keys = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and not words[0].startswith("#"):
            keys.append((words[0], words[1]))
    rank = {kind: i for i, kind in enumerate(KEY_TYPE_ORDER)}
    return sorted(keys, key=lambda key: rank.get(key[0], len(rank)))


def known_hosts_lines(name: str, keys: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{name} {kind} {blob}" for kind, blob in keys]


def replace_host(known_hosts: str, name: str, lines: Iterable[str]) -> str:
    """known_hosts text with every entry for ``name`` replaced by ``lines``."""
    kept = [
        line
        for line in known_hosts.splitlines()
        if line.strip() and name not in line.split(maxsplit=1)[0].split(",")
    ]
    return "".join(f"{line}\n" for line in [*kept, *lines])
