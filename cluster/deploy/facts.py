"""What an agent host has, read over one SSH connection by one probe: facts, never changes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from posixpath import basename

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticError

from cluster.errors import HostError
from cluster.transport import connect, run
from cluster.units import layout

Run = Callable[[list[str]], tuple[int, str, str]]
Clock = Callable[[], float]
FACT_TIMEOUT = 60.0
TRACKED_FILES = (str(layout.UNIT_PATH), str(layout.AGENT_CONFIG), str(layout.SECRETS_ENV))
INSTALLED_MARK = ".installed"  # written last into a release: only complete releases count
# Runs as `python3 -c PROBE ARGS`; stdlib only, Python 3.6+, read-only. A file checksum is None
# when the file is missing and "" when it is unreadable.
PROBE = r"""
import hashlib, importlib.util, json, os, pwd, grp, shutil, subprocess, sys, time
now = time.time()
a = json.loads(sys.argv[1])
def sha(p):
    try:
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
def read(p, default=""):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return default
def cgroup_dirs():
    rel = [l[3:] for l in read("/proc/self/cgroup").splitlines() if l.startswith("0::")]
    parts = [p for p in (rel[0] if rel else "").split("/") if p]
    return ["/sys/fs/cgroup/" + "/".join(parts[:i]) for i in range(len(parts), -1, -1)]
mem = [int(l.split()[1]) * 1024 for l in read("/proc/meminfo").splitlines()
       if l.startswith("MemTotal:")][0]
cpus = len(os.sched_getaffinity(0))
for d in cgroup_dirs():
    m = read(d + "/memory.max", "max")
    mem = min(mem, int(m)) if m.isdigit() else mem
    q = read(d + "/cpu.max", "max").split()
    cpus = min(cpus, -(-int(q[0]) // int(q[1]))) if q and q[0].isdigit() else cpus
p = a["base"]
while not os.path.exists(p):
    p = os.path.dirname(p)
st = os.statvfs(p)
w = a["wheels"]
def owner(p):
    try:
        s = os.lstat(p)
    except OSError:
        return None
    def name(get, i):
        try:
            return get(i)[0]
        except KeyError:
            return str(i)
    return [s.st_mode & 0o7777, name(pwd.getpwuid, s.st_uid), name(grp.getgrgid, s.st_gid)]
def unit(u):
    if not shutil.which("systemctl"):
        return {}
    out = subprocess.run(["systemctl", "show", u, "-p", "ActiveState,UnitFileState,MainPID"],
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
def link(p):
    return os.readlink(p) if os.path.islink(p) else None
def user(n):
    try:
        return pwd.getpwnam(n).pw_dir
    except KeyError:
        return None
rel, cc = a["releases"], a["cli_root"]
print(json.dumps({
    "remote_time": now, "python": list(sys.version_info[:3]),
    "venv": importlib.util.find_spec("ensurepip") is not None,
    "pid1": read("/proc/1/comm"), "systemd_booted": os.path.isdir("/run/systemd/system"),
    "systemctl": shutil.which("systemctl") is not None,
    "docker": shutil.which("docker") is not None,
    "cpus": cpus, "memory_bytes": mem, "disk_free_bytes": st.f_bavail * st.f_frsize,
    "releases": [r for _, r in sorted((os.path.getmtime(os.path.join(rel, r, a["mark"])), r)
                 for r in os.listdir(rel) if os.path.exists(os.path.join(rel, r, a["mark"])))]
                if os.path.isdir(rel) else [],
    "current": link(a["current"]), "previous": link(a["previous"]),
    "files": {f: sha(f) for f in a["files"]},
    "owners": {f: owner(f) for f in a["files"] + a["dirs"]},
    "unit": unit(a["unit"]), "user_home": user(a["user"]),
    "wheels": {n: sha(os.path.join(w, n)) for n in sorted(os.listdir(w)) if n.endswith(".whl")}
              if os.path.isdir(w) else {},
    "cli": {d: read(os.path.join(cc, d, a["mark"])) for d in sorted(os.listdir(cc))
            if os.path.isfile(os.path.join(cc, d, a["mark"]))} if os.path.isdir(cc) else {},
    "cli_links": {r: os.path.basename(link(os.path.join(rel, r, a["cli_link"])).rstrip("/"))
                  for r in sorted(os.listdir(rel))
                  if os.path.islink(os.path.join(rel, r, a["cli_link"]))}
                 if os.path.isdir(rel) else {},
}))
"""


class HostFacts(BaseModel):
    """One host as the probe saw it. ``python`` None means no python3: nothing else is known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    python: tuple[int, int, int] | None = None
    venv: bool = False
    pid1: str = ""
    systemd_booted: bool = False
    systemctl: bool = False
    docker: bool = False
    cpus: int = 0
    memory_bytes: int = 0
    disk_free_bytes: int = 0
    clock_skew_s: float = 0.0  # host clock minus control host clock
    clock_uncertainty_s: float = 0.0  # half the round trip the probe took
    releases: tuple[str, ...] = ()
    current: str | None = None  # the release `current` points at (its directory name)
    previous: str | None = None  # the release `previous` points at (what rollback returns to)
    owners: dict[str, tuple[int, str, str] | None] = {}  # path -> (mode, user, group)
    unit: dict[str, str] = {}  # systemctl show: ActiveState, UnitFileState, MainPID
    user_home: str | None = None  # the service user's home; None: no such user
    files: dict[str, str | None] = {}
    wheels: dict[str, str | None] = {}
    cli: dict[str, str] = {}  # complete Claude Code CLI installs: directory -> tarball sha256
    cli_links: dict[str, str] = {}  # release -> the CLI directory its claude-code link names

    @property
    def systemd(self) -> bool:
        """systemd is PID 1 and booted the host (what sd_booted() checks)."""
        return self.pid1 == "systemd" and self.systemd_booted and self.systemctl

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    @property
    def disk_free_gb(self) -> float:
        return self.disk_free_bytes / 1e9


def probe_argv(files: tuple[str, ...] = (), dirs: tuple[str, ...] = ()) -> list[str]:
    """The probe's argv; ``files`` are checksummed besides TRACKED_FILES, ``dirs`` only stat'ed."""
    paths = {
        "base": str(layout.BASE),
        "releases": str(layout.RELEASES),
        "current": str(layout.CURRENT),
        "previous": str(layout.PREVIOUS),
        "wheels": str(layout.WHEELS),
        "cli_root": str(layout.CLI_ROOT),
        "cli_link": layout.CLI_LINK,
        "files": sorted(set(TRACKED_FILES) | set(files)),
        "dirs": list(dirs),
        "mark": INSTALLED_MARK,
        "unit": layout.UNIT_NAME,
        "user": layout.SERVICE_USER,
    }
    return ["python3", "-c", PROBE, json.dumps(paths)]


def gather_facts(
    run_argv: Run, host: str, clock: Clock = time.time, argv: list[str] | None = None
) -> HostFacts:
    """Run the probe once through ``run_argv`` and parse what it printed."""
    started = clock()
    code, out, err = run_argv(argv or probe_argv())
    finished = clock()
    if code == 127:
        return HostFacts(host=host)
    if code != 0:
        tail = " | ".join(err.strip().splitlines()[-3:])
        raise HostError(host, f"fact probe exited {code}: {tail or '(no stderr)'}")
    try:
        seen = json.loads(out)
        for link in ("current", "previous"):
            target = seen.get(link)
            seen[link] = basename(target.rstrip("/")) if target else None
        midpoint = (started + finished) / 2
        seen["clock_skew_s"] = seen.pop("remote_time") - midpoint
        seen["clock_uncertainty_s"] = (finished - started) / 2
        return HostFacts(host=host, **seen)
    except (ValueError, KeyError, TypeError, PydanticError) as exc:
        raise HostError(host, f"fact probe printed something unexpected: {exc}") from exc


def read_facts(
    host: str,
    port: int,
    user: str,
    key_file: Path,
    known_hosts: Path,
    timeout: float = FACT_TIMEOUT,
    name: str | None = None,
) -> HostFacts:
    """Connect once (host key verified), gather the facts, close. HostError if unreachable."""
    with connect(host, port, user, key_file, known_hosts, timeout=timeout) as conn:
        return gather_facts(partial(run, conn, check=False, timeout=timeout), name or host)
