"""Kernel limits a set of test hosts needs, raised when we may or named when we may not.

systemd in every test host takes inotify instances (pid 1, journald, logind, udevd, dbus...),
and they count against the *host's* user: the containers' root is this machine's root. The
kernel's default `fs.inotify.max_user_instances` is 128, so about 20 hosts boot and the next
ones hang in `initializing` until their boot timeout. Checked before any host starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from cluster.errors import ClusterError

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
PER_HOST = 8  # what one booted test host held, with room (seen: 5 or 6)
MARGIN = 64  # for everything else this user runs (editors, watchers, the agents)
RAISED_TO = 1024  # at least: the value systemd-based container hosts commonly set


def inotify_in_use(uid: int | None = None, proc: Path = Path("/proc")) -> int:
    """The inotify instances ``uid``'s processes hold now (one per inotify descriptor)."""
    uid = os.geteuid() if uid is None else uid
    held = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            for fd in (entry / "fd").iterdir():
                if str(fd.readlink()) == "anon_inode:inotify":
                    held += 1
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return held


def ensure_inotify(hosts: int, limit_file: Path = INOTIFY_INSTANCES, *,
                   euid: int | None = None, in_use: int | None = None) -> int:
    """Make room for ``hosts`` more test hosts' inotify instances: the limit as it is when it
    suffices, raised (as root) when not, else a ClusterError naming the command. Returns the
    limit in force."""
    euid = os.geteuid() if euid is None else euid
    need = (inotify_in_use() if in_use is None else in_use) + hosts * PER_HOST + MARGIN
    try:
        limit = int(limit_file.read_text().strip())
    except (OSError, ValueError):
        return 0  # not Linux's /proc/sys here: nothing to check against
    if limit >= need:
        return limit
    wanted = max(need, RAISED_TO)
    why = (f"{hosts} test host(s) need about {need} inotify instances (systemd in each takes "
           f"up to {PER_HOST}) and fs.inotify.max_user_instances is {limit}")
    if euid == 0:
        try:
            limit_file.write_text(f"{wanted}\n")
            return wanted
        except OSError as exc:
            why += f"; raising it failed: {exc.strerror}"
    raise ClusterError(f"{why}: run `sudo sysctl -w fs.inotify.max_user_instances={wanted}` "
                       "(and add it to /etc/sysctl.d/ to keep it)")
