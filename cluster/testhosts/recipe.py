"""The test-host image recipe as data: debootstrap arguments, rootfs edits, and their hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

IMAGE_REPOSITORY = "ccc-testhost"

PACKAGES = (
    "openssh-server",
    "python3",
    "python3-venv",
    "git",
    "systemd",
    "systemd-sysv",
    "sudo",
    "iproute2",
    "procps",
    "cron",
    "ca-certificates",
    "bubblewrap",  # the sandbox of every attempt (cluster/sandbox/)
)

# Runs before sshd on every boot; `ssh-keygen -A` only creates missing keys, so each
# container gets keys of its own on its first boot and keeps them across restarts.
HOST_KEYS_UNIT = """\
[Unit]
Description=Generate this host's own SSH host keys (the image ships none)
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
"""

# systemd makes / a shared mount when the kernel boots it, not in a container, where docker's
# /run stays private: then the credentials systemd mounts for a unit (LoadCredential=, which
# the agent's unit reads its secrets with) never show up in the unit. This puts it back as on
# a real host, early in boot.
SHARED_MOUNTS_UNIT = """\
[Unit]
Description=Shared mount propagation, as systemd sets it up on a host it boots
DefaultDependencies=no
Before=local-fs-pre.target sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/mount --make-rshared /
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
"""


@dataclass(frozen=True)
class WriteFile:
    """Create or replace a file with this content and mode."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Symlink:
    """Create or replace a symbolic link (targets are read inside the container)."""

    path: str
    target: str


@dataclass(frozen=True)
class RemoveGlob:
    """Delete the files that match a glob, if any."""

    pattern: str


@dataclass(frozen=True)
class MakeDir:
    """Create a directory with this mode."""

    path: str
    mode: int = 0o755


Edit = WriteFile | Symlink | RemoveGlob | MakeDir


def _default_edits() -> tuple[Edit, ...]:
    unit = "/etc/systemd/system/ccc-ssh-host-keys.service"
    shared = "/etc/systemd/system/ccc-shared-mounts.service"
    return (
        RemoveGlob("/etc/ssh/ssh_host_*"),
        # An empty machine-id tells systemd to make a new one at first boot.
        WriteFile("/etc/machine-id", ""),
        RemoveGlob("/var/lib/dbus/machine-id"),
        MakeDir("/root/.ssh", 0o700),
        WriteFile(unit, HOST_KEYS_UNIT),
        Symlink("/etc/systemd/system/ssh.service.wants/ccc-ssh-host-keys.service", unit),
        WriteFile(shared, SHARED_MOUNTS_UNIT),
        Symlink("/etc/systemd/system/sysinit.target.wants/ccc-shared-mounts.service", shared),
        Symlink(
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
            "/lib/systemd/system/ssh.service",
        ),
        RemoveGlob("/var/cache/apt/archives/*.deb"),
        RemoveGlob("/var/lib/apt/lists/*_Packages"),
    )


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the image's content; its digest names the image tag."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = PACKAGES
    edits: tuple[Edit, ...] = field(default_factory=_default_edits)
    cmd: tuple[str, ...] = ("/sbin/init",)

    def digest(self) -> str:
        """A stable sha256 over the recipe (edit kinds included), independent of the mirror."""
        doc = asdict(self)
        doc["edits"] = [[type(e).__name__, asdict(e)] for e in self.edits]
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def image_tag(self) -> str:
        """``repository:suite-<12 hex digits of the digest>``."""
        return f"{IMAGE_REPOSITORY}:{self.suite}-{self.digest()[:12]}"

    def debootstrap_argv(self, rootfs: Path, mirror: str) -> list[str]:
        return [
            "debootstrap",
            f"--variant={self.variant}",
            "--include=" + ",".join(self.packages),
            self.suite,
            str(rootfs),
            mirror,
        ]

    def import_changes(self) -> list[str]:
        """The Dockerfile instructions that ``docker import -c`` applies."""
        return ["CMD " + json.dumps(list(self.cmd))]
