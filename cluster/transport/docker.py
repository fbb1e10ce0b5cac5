"""The docker engine through the docker SDK: the only module that imports ``docker``.

Deploy runs agent containers and builds their image through it; the test hosts (systemd and
sshd in containers, ``cluster/testhosts``) are started and inspected through it too.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import docker
import docker.errors
from docker.models.containers import _create_container_args
from docker.types import IPAMConfig, IPAMPool

from cluster.errors import ClusterError, HostError

LABEL = "io.claude-code-cluster.testhosts"
ENSURE_HINT = "start the engine with scripts/ensure-docker.sh"
UNMASKED = "systempaths=unconfined"  # docker run's option; run_container translates it
EXEC_TIMEOUT = 600.0  # an exec that outlives this is stopped waiting for, and an error
_REFUSED = "Error response from daemon:"  # docker exec's own failure, not the command's

Client = Any  # docker.DockerClient; the SDK ships no type information
Container = Any  # docker.models.containers.Container


class DockerUnavailable(ClusterError):
    """The docker engine does not answer."""


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn docker SDK errors into ClusterError once, naming what was being done."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise ClusterError(f"docker: {what}: {exc}") from exc


def client() -> Client:
    """A client for the local engine, checked with a ping."""
    try:
        handle = docker.from_env(timeout=120)
        handle.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(f"docker engine not reachable ({exc}): {ENSURE_HINT}") from exc
    return handle


def image_exists(handle: Client, tag: str) -> bool:
    try:
        handle.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def import_image(handle: Client, stream: IO[bytes], tag: str, changes: list[str]) -> None:
    """``docker import -c CHANGE - TAG`` from a tar stream."""
    repository, _, version = tag.partition(":")
    with translated(f"import {tag}"):
        handle.api.import_image_from_stream(
            stream, repository=repository, tag=version or "latest", changes=changes
        )
    if not image_exists(handle, tag):
        raise ClusterError(f"docker: import of {tag} reported success but the image is missing")


def remove_image(handle: Client, tag: str) -> None:
    try:
        handle.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        return
    except docker.errors.DockerException as exc:
        raise ClusterError(f"docker: remove image {tag}: {exc}") from exc


def ensure_network(handle: Client, name: str, subnet: str, gateway: str) -> None:
    """Create the bridge network if missing; refuse an existing one with another subnet."""
    with translated(f"network {name}"):
        found = handle.networks.list(names=[name])
        existing = [n for n in found if n.name == name]
        if not existing:
            pool = IPAMPool(subnet=subnet, gateway=gateway)
            handle.networks.create(
                name, driver="bridge", ipam=IPAMConfig(pool_configs=[pool]), labels={LABEL: "1"}
            )
            return
        configs = existing[0].attrs.get("IPAM", {}).get("Config") or []
        subnets = [c.get("Subnet") for c in configs]
    if subnet not in subnets:
        raise ClusterError(f"docker network {name} exists with subnets {subnets}, not {subnet}")


def remove_network(handle: Client, name: str) -> bool:
    """Remove the network if it exists and no container uses it; True if it is gone."""
    with translated(f"remove network {name}"):
        for network in handle.networks.list(names=[name]):
            if network.name != name:
                continue
            network.reload()
            if network.attrs.get("Containers"):
                return False
            network.remove()
    return True


def labelled(handle: Client, value: str | None = None) -> list[Container]:
    """Containers carrying the test-host label (with this value, if given), running or not."""
    selector = LABEL if value is None else f"{LABEL}={value}"
    with translated("list test-host containers"):
        return list(handle.containers.list(all=True, filters={"label": selector}))


def get(handle: Client, name: str) -> Container:
    try:
        return handle.containers.get(name)
    except docker.errors.NotFound as exc:
        raise HostError(name, "no such test-host container") from exc
    except docker.errors.DockerException as exc:
        raise HostError(name, f"docker: {exc}") from exc


def exec_argv(container: Container, argv: list[str], *, user: str | None = None,
              timeout: float = EXEC_TIMEOUT) -> tuple[int, str, str]:
    """Run argv inside the container (the trusted channel) as ``user`` (the image's by
    default); (exit code, stdout, stderr). Through the engine's own CLI: the SDK reads an
    exec's output from the socket beneath its HTTP reader and loses what that reader had
    buffered, so under load an answer came back empty or its frames misread ("95 is not a
    valid stream": docker/docker-py#3332)."""
    command = ["docker", "exec", *(["--user", user] if user else []), container.id, *argv]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except FileNotFoundError as exc:
        raise HostError(container.name, f"docker exec {argv[0]}: no docker CLI: {ENSURE_HINT}"
                        ) from exc  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise HostError(container.name, f"docker exec {argv[0]}: no end in {timeout:.0f} s"
                        ) from exc  # fmt: skip
    err = _text(done.stderr)
    if done.returncode != 0 and err.startswith(_REFUSED):
        raise HostError(container.name, f"docker exec {argv[0]}: {err.strip()}")
    return done.returncode, _text(done.stdout), err


# The container's own CPU count, read inside (this engine's stats API answered zeros for
# containers under cgroup v1): cgroup v2's cpu.stat (microseconds), else v1's cpuacct.usage
# (ns) at the container's own cgroup path (/proc/self/cgroup: an exec joins the container's
# cgroup) where the whole hierarchy is mounted in it, as in a systemd test host (there the
# mount's root is the machine's: every process on it), else at the mount's root (a
# namespaced view: its own).
_CPU_READ = """
if [ -f /sys/fs/cgroup/cpu.stat ]; then exec cat /sys/fs/cgroup/cpu.stat; fi
own=$(sed -n 's/^[0-9]*:[^:]*cpuacct[^:]*://p' /proc/self/cgroup | head -n 1)
[ -n "$own" ] || exit 1
for dir in "/sys/fs/cgroup/cpuacct$own" "/sys/fs/cgroup/cpu,cpuacct$own" /sys/fs/cgroup/cpuacct; do
  if [ -f "$dir/cpuacct.usage" ]; then printf 'usage_nsec '; exec cat "$dir/cpuacct.usage"; fi
done
exit 1
"""


def cpu_seconds(container: Container) -> float:
    """CPU seconds the container's processes used so far (its cgroup, v1 or v2)."""
    code, out, err = exec_argv(container, ["sh", "-c", _CPU_READ])
    usage = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    if code == 0 and "usage_usec" in usage:
        return int(usage["usage_usec"]) / 1e6
    if code == 0 and "usage_nsec" in usage:
        return int(usage["usage_nsec"]) / 1e9
    raise HostError(container.name,
                    f"cannot read its cgroup's CPU (exit {code}): {err.strip() or out!r}")


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def logs_tail(container: Container, lines: int = 30) -> str:
    """The end of the container's console (systemd's boot messages), for error reports."""
    try:
        data = container.logs(tail=lines)
    except docker.errors.DockerException as exc:
        return f"(no logs: {exc})"
    return _text(data)


def published_port(container: Container) -> int:
    """The 127.0.0.1 port that forwards to the container's sshd."""
    bindings = container.attrs.get("HostConfig", {}).get("PortBindings", {}).get("22/tcp") or []
    if not bindings or not bindings[0].get("HostPort"):
        raise HostError(container.name, "publishes no port for 22/tcp")
    return int(bindings[0]["HostPort"])


def put_file(container: Container, directory: str, name: str, data: bytes, mode: int) -> None:
    """Write one root-owned file into the container without any shell."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), mode, 0, 0
        archive.addfile(info, io.BytesIO(data))
    try:
        ok = container.put_archive(directory, buffer.getvalue())
    except docker.errors.DockerException as exc:
        raise HostError(container.name, f"docker put {directory}/{name}: {exc}") from exc
    if not ok:
        raise HostError(container.name, f"docker put {directory}/{name} failed")


def is_port_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "port is already allocated" in text or "address already in use" in text


class PortTaken(ClusterError):
    """The host port picked for a container was taken meanwhile; pick another."""


def run_systemd_container(
    handle: Client, image: str, name: str, port: int, network: str, label_value: str
) -> Container:
    """Start a container whose PID 1 is systemd, with the flags verified on this machine.

    ``--privileged`` fails here; this set works (systempaths=unconfined: see run_container).
    The stop signal is the one systemd halts on, so a stop is a clean shutdown instead of a
    ten-second wait for SIGKILL.
    """
    try:
        return run_container(
            handle,
            image,
            ["/sbin/init"],
            name=name,
            hostname=name,
            labels={LABEL: label_value},
            cap_add=["SYS_ADMIN"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined", UNMASKED],
            cgroupns="host",
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
            tmpfs={"/run": "", "/run/lock": ""},
            environment={"container": "docker"},
            ports={"22/tcp": ("127.0.0.1", port)},
            network=network,
            stop_signal="SIGRTMIN+3",
        )
    except docker.errors.APIError as exc:
        if is_port_conflict(exc):
            _remove_quietly(handle, name)
            raise PortTaken(f"127.0.0.1:{port} taken while starting {name}") from exc
        raise HostError(name, f"docker run: {exc}") from exc


def run_container(handle: Client, image: str, command: list[str] | None = None,
                  **kwargs: Any) -> Container:  # fmt: skip
    """``containers.run(image, command, detach=True, **kwargs)``, also taking the docker CLI's
    ``systempaths=unconfined`` among ``security_opt``: the SDK has no such option, the engine
    takes it as empty MaskedPaths and ReadonlyPaths in the HostConfig (what the CLI sends).

    bubblewrap needs it: the kernel lets a user namespace mount a fresh /proc only where an
    existing one is fully visible, and docker's masks (/proc/kcore, a read-only /proc/sys...)
    are mounts over parts of it, so without this the sandbox's ``--proc`` (its own PID
    namespace) fails with "Can't mount proc on /newroot/proc: Operation not permitted".
    """
    kwargs.pop("detach", None)
    options = list(kwargs.pop("security_opt", None) or [])
    unmasked = UNMASKED in options
    if options:
        kwargs["security_opt"] = [o for o in options if o != UNMASKED]
    version = handle.api._version  # what the SDK's own create() passes
    create = _create_container_args({**kwargs, "image": image, "command": command,
                                     "version": version})  # fmt: skip
    if unmasked:
        create["host_config"].update(MaskedPaths=[], ReadonlyPaths=[])
    created = handle.api.create_container(**create)
    container = handle.containers.get(created["Id"])
    container.start()
    return container


def network_ip(container: Container, network: str) -> str:
    container.reload()
    networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
    address = str(networks.get(network, {}).get("IPAddress") or "")
    if not address:
        raise HostError(container.name, f"has no address on docker network {network}")
    return address


def remove(container: Container) -> None:
    """Force-remove a container; one that is already gone is fine."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return
    except docker.errors.DockerException as exc:
        raise HostError(container.name, f"docker rm: {exc}") from exc


def _remove_quietly(handle: Client, name: str) -> None:
    try:
        handle.containers.get(name).remove(force=True)
    except docker.errors.DockerException:
        return
