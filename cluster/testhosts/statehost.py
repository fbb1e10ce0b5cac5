"""A state host for real-host tests: one test host serving a bare state repo over SSH."""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cluster.atomicfile import write_atomic
from cluster.errors import HostError
from cluster.hooks.ask import SOCKET_NAME
from cluster.hooks.install import HOOKS_DIR, SERVER_HOOKS, render
from cluster.state import refwatch
from cluster.state.init import init_state_repo
from cluster.state.remotewatch import DEFAULT_COMMAND
from cluster.state.session import DEFAULT_COMMAND as SESSION_COMMAND
from cluster.testhosts.hosts import host_keys, up
from cluster.testhosts.model import HostRecord, HostSet
from cluster.testhosts.readiness import NotReady, poll
from cluster.transport import docker
from cluster.transport.openssh import ssh_command
from cluster.transport.sshkeys import generate_keypair, known_hosts_lines

REPO = "/srv/state.git"
PREFIX = "ccc-deploy-state"
SETTINGS = b"heartbeat_seconds: 2\nlease_seconds: 30\nfold_delay_seconds: 1\n"
# With hooks: the project and its libraries unpacked from the deploy's wheels, imported by the
# host's own interpreter, and the judge server beside the repo under systemd.
LIB = "/opt/claude-cluster-lib"
HOST_PYTHON = "/usr/bin/python3"
JUDGE_UNIT = "claude-cluster-judge"
JUDGE_START = 60.0


@dataclass(frozen=True)
class StateHost:
    """Where agents (container to container) and the control host (127.0.0.1) reach the repo."""

    hosts: HostSet
    deploy_key: Path  # the agents' key, authorised for root on the state host
    agents_known_hosts: Path  # the state host's key under its docker network address

    @property
    def record(self) -> HostRecord:
        return self.hosts.hosts[0]

    @property
    def agent_url(self) -> str:
        return f"ssh://root@{self.record.address}{REPO}"

    @property
    def control_url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.record.port}{REPO}"

    @property
    def control_ssh_command(self) -> str:
        paths = self.hosts.paths
        return ssh_command(paths.private_key, paths.known_hosts)


def start_state_host(
    state_dir: Path, prefix: str = PREFIX, settings: bytes = SETTINGS,
    wheels: Path | None = None,
) -> StateHost:
    """A fresh host named PREFIX-1 with an initialised bare state repo at /srv/state.git.

    ``settings`` is the repo's settings file: fast heartbeats for tests by default. With
    ``wheels`` (a directory of the project's and its libraries' wheels: the deploy's
    ``build_wheels``) the repo is served as on a production state host, its server hooks
    installed and the judge server running (:func:`serve_hooks`); without, it takes any push.
    """
    hosts = up(1, prefix, state_dir / "host", say=lambda _: None)
    record = hosts.hosts[0]
    container = docker.get(docker.client(), record.name)
    deploy_key = state_dir / "deploy_key"
    generate_keypair(deploy_key, comment="ccc-deploy-agents")
    authorized = hosts.paths.public_key.read_bytes() + deploy_key.with_suffix(".pub").read_bytes()
    docker.put_file(container, "/root/.ssh", "authorized_keys", authorized, 0o600)
    # Agents hear of main's moves from it (cluster.state.remotewatch), as from a real state
    # host with the package installed.
    docker.put_file(container, "/usr/local/bin", DEFAULT_COMMAND, refwatch.script(), 0o755)
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "state.git"
        init_state_repo(repo, settings=settings)
        _copy_tree(container, repo, "/srv")
    if wheels is not None:
        serve_hooks(container, wheels)
    known = state_dir / "agents_known_hosts"
    lines = known_hosts_lines(record.address, host_keys(container))
    write_atomic(known, "".join(f"{line}\n" for line in lines))
    return StateHost(hosts, deploy_key, known)


def serve_hooks(container: docker.Container, wheels: Path) -> None:
    """Install the repo's server hooks and start its judge server, as an operator does on a
    state host with the package: the wheels unpacked into :data:`LIB`, the hooks recorded
    with the host's python3 importing from there, ``claude-cluster-session`` on PATH,
    ``claude-cluster state judge`` a systemd unit; returns once the judge listens."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for wheel in sorted(wheels.glob("*.whl")):
            _unpack_wheel(archive, wheel)
    with docker.translated(f"copy the wheels to {container.name}"):
        if not container.put_archive("/", buffer.getvalue()):
            raise HostError(container.name, f"could not unpack the wheels into {LIB}")
    for name in SERVER_HOOKS:
        if (HOOKS_DIR / name).is_file():
            script = render((HOOKS_DIR / name).read_bytes(), HOST_PYTHON, LIB)
            docker.put_file(container, f"{REPO}/hooks", name, script, 0o755)
    # Agents read and write over a session with it (cluster.state.session), as with a real
    # state host's console script.
    session = (f"#!{HOST_PYTHON} -P\nimport sys\nsys.path[:0] = [{LIB!r}]\n"
               "from cluster.state.sessiond import main\nsys.exit(main())\n")
    docker.put_file(container, "/usr/local/bin", SESSION_COMMAND, session.encode(), 0o755)
    start = (f"import sys; sys.path[:0] = [{LIB!r}]; from cluster.cli import main; "
             "sys.exit(main())")
    code, out, err = docker.exec_argv(container, [
        "systemd-run", f"--unit={JUDGE_UNIT}", "--property=Restart=on-failure",
        HOST_PYTHON, "-P", "-c", start, "state", "judge", "--repo", REPO])
    if code != 0:
        raise HostError(container.name, f"systemd-run {JUDGE_UNIT}: {(out + err).strip()}")
    judge_socket = f"{REPO}/{SOCKET_NAME}"
    try:
        poll(lambda: (docker.exec_argv(container, ["test", "-S", judge_socket])[0] == 0,
                      f"no {judge_socket}"), what="the judge server", timeout=JUDGE_START)
    except NotReady as exc:
        _, log, _ = docker.exec_argv(container, ["journalctl", "--no-pager", "-u", JUDGE_UNIT])
        raise HostError(container.name, f"{exc}:\n{log[-2000:]}") from exc


def _unpack_wheel(archive: tarfile.TarFile, wheel: Path) -> None:
    """``wheel``'s importable files into ``archive`` under :data:`LIB` (root's, as pip would
    install them; no scripts: nothing here runs but the hook and the judge)."""
    with zipfile.ZipFile(wheel) as zipped:
        for member in zipped.infolist():
            top = member.filename.split("/", 1)[0]
            if member.is_dir() or top.endswith(".data"):
                continue
            data = zipped.read(member)
            info = tarfile.TarInfo(f"{LIB.lstrip('/')}/{member.filename}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, 0, 0
            archive.addfile(info, io.BytesIO(data))


def _copy_tree(container: docker.Container, local: Path, directory: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(local), arcname=local.name, filter=_root_owned)
    with docker.translated(f"copy {local.name} to {container.name}"):
        if not container.put_archive(directory, buffer.getvalue()):
            raise HostError(container.name, f"could not copy {local.name} to {directory}")


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def copy_repo(state: StateHost, local: Path, directory: str) -> None:
    """Copy the bare repo ``local`` into ``directory`` on the state host (e.g. a demo target)."""
    _copy_tree(docker.get(docker.client(), state.record.name), local, directory)
