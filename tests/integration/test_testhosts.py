"""The test hosts are real: systemd up, SSH with verified host keys, one network between them."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nornir import InitNornir

from cluster.chaos.hostlogs import agent_state
from cluster.errors import HostError, HostKeyMismatch
from cluster.testhosts import faults
from cluster.testhosts.hosts import down
from cluster.testhosts.model import HostRecord, HostSet
from cluster.transport import connect, docker, run
from tests.helpers import poll

pytestmark = pytest.mark.integration


def _connect(
    hosts: HostSet,
    host: HostRecord,
    known_hosts: Path | None = None,
    accept_new: bool = False,
    timeout: float = 30.0,  # generous: a shared 2-core machine can be very busy
) -> Any:
    """A strict connection as root with the set's client key (a Fabric Connection)."""
    key, trusted = hosts.paths.private_key, known_hosts or hosts.paths.known_hosts
    return connect("127.0.0.1", host.port, "root", key, trusted, accept_new, timeout)


def test_systemd_runs_on_every_host_over_verified_ssh(testhosts: HostSet) -> None:
    machine_ids = set()
    for host in testhosts.hosts:
        assert host.system_state == "running", f"{host.name} failed units: {host.failed_units}"
        with _connect(testhosts, host) as conn:
            _, state, _ = run(conn, ["systemctl", "is-system-running"], check=False)
            _, hostname, _ = run(conn, ["hostname"])
            _, machine_id, _ = run(conn, ["cat", "/etc/machine-id"])
        assert state.strip() == "running"
        assert hostname.strip() == host.name
        machine_ids.add(machine_id.strip())
    assert len(machine_ids) == len(testhosts.hosts), "each container needs its own machine-id"


def test_every_host_has_its_own_host_key(testhosts: HostSet) -> None:
    lines = testhosts.paths.known_hosts.read_text().splitlines()
    ed25519 = [line.split()[2] for line in lines if line.split()[1] == "ssh-ed25519"]
    assert len(ed25519) == len(testhosts.hosts)
    assert len(set(ed25519)) == len(ed25519)


def test_unknown_host_key_is_rejected(testhosts: HostSet, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostError, match="unknown host key") as caught:
        _connect(testhosts, testhosts.hosts[0], empty)
    assert not isinstance(caught.value, HostKeyMismatch)
    assert empty.read_text() == "", "a rejected key must not be recorded"


def test_accept_new_records_the_key_it_trusted(testhosts: HostSet, tmp_path: Path) -> None:
    fresh = tmp_path / "known_hosts"
    host = testhosts.hosts[0]
    with _connect(testhosts, host, fresh, accept_new=True) as conn:
        run(conn, ["true"])
    recorded = fresh.read_text().split()
    assert recorded[0] == host.known_hosts_name
    assert recorded[2] in testhosts.paths.known_hosts.read_text()


def test_changed_host_key_raises_mismatch(testhosts: HostSet, rekeyed_host: HostRecord) -> None:
    with pytest.raises(HostKeyMismatch, match="host key changed") as caught:
        _connect(testhosts, rekeyed_host)
    assert caught.value.host == f"root@127.0.0.1:{rekeyed_host.port}"


def test_host_key_trusted_again_after_rekey_works(testhosts: HostSet) -> None:
    with _connect(testhosts, testhosts.hosts[-1]) as conn:
        assert run(conn, ["true"])[0] == 0


def test_unreachable_port_says_connection_refused(testhosts: HostSet) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = HostRecord("nothing-here", port, "")
    with pytest.raises(HostError, match="connection refused"):
        _connect(testhosts, host)


def test_silent_port_says_timed_out(testhosts: HostSet) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host = HostRecord("silent", silent.getsockname()[1], "")
        with pytest.raises(HostError, match="timed out"):
            _connect(testhosts, host, timeout=1.0)


def test_stopped_host_refuses_then_boots_again(testhosts: HostSet) -> None:
    host = testhosts.hosts[1]
    faults.stop_host(host.name)
    try:
        with pytest.raises(HostError, match="connection refused"):
            _connect(testhosts, host)
    finally:
        again = faults.start_host(host.name)
    assert again.port == host.port
    with _connect(testhosts, host) as conn:
        assert run(conn, ["systemctl", "is-system-running"])[1].strip() == "running"


def test_restart_keeps_port_and_host_key(testhosts: HostSet) -> None:
    host = testhosts.hosts[0]
    again = faults.restart_host(host.name)
    assert (again.port, again.address) == (host.port, host.address)
    with _connect(testhosts, host) as conn:
        assert run(conn, ["true"])[0] == 0


def test_hosts_reach_each_other_on_their_network(testhosts: HostSet) -> None:
    client = docker.client()
    first = docker.get(client, testhosts.hosts[0].name)
    for peer in testhosts.hosts[1:]:
        code, out, err = docker.exec_argv(first, ["getent", "hosts", peer.name])
        assert code == 0, err
        assert out.split()[0] == peer.address
        # A TCP check with no ssh client: read sshd's greeting through bash's /dev/tcp.
        greet = f"exec 3<>/dev/tcp/{peer.address}/22 && head -c 4 <&3"
        code, out, err = docker.exec_argv(first, ["timeout", "10", "bash", "-c", greet])
        assert (code, out) == (0, "SSH-"), err


def test_inventory_loads_in_nornir(testhosts: HostSet) -> None:
    paths = testhosts.paths
    nr = InitNornir(
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(paths.hosts_file),
                "group_file": str(paths.groups_file),
                "defaults_file": str(paths.defaults_file),
            },
        },
        logging={"enabled": False},
    )
    assert sorted(nr.inventory.hosts) == sorted(h.name for h in testhosts.hosts)
    for host in testhosts.hosts:
        entry = nr.inventory.hosts[host.name]
        assert (entry.hostname, entry.port, entry.username) == ("127.0.0.1", host.port, "root")
        assert entry["network_ip"] == host.address
        assert entry["known_hosts_file"] == str(paths.known_hosts)


def test_down_of_an_unknown_set_removes_nothing(testhosts: HostSet) -> None:
    assert down(f"{testhosts.name_prefix}-none") == []
    running = docker.labelled(docker.client(), testhosts.name_prefix)
    assert len(running) == len(testhosts.hosts)


def test_agent_state_tells_a_hosts_unit_and_journal(testhosts: HostSet) -> None:
    name = testhosts.hosts[0].name
    told = agent_state(name)  # no agent deployed here: the unit is unknown to systemd
    first, *journal = told.splitlines()
    assert first.startswith(f"{name}: "), told
    assert {"ActiveState=inactive", "SubState=dead", "NRestarts=0", "MainPID=0"} <= set(
        first.split()
    ), told
    assert journal == ["-- No entries --"], told



def test_a_containers_cpu_is_read_from_the_engine(testhosts: HostSet) -> None:
    """bench/fleet.py's state host CPU: its cgroup's count grows with work done inside (the
    read knew only cgroup v2, and this machine runs v1; the engine's stats answered zeros)."""
    handle = docker.client()
    image = docker.get(handle, testhosts.hosts[0].name).image
    busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 120"
    container = docker.run_container(handle, image.id, ["sh", "-c", busy],
                                     name=f"{testhosts.name_prefix}-cpu", entrypoint=[])
    try:
        poll(lambda: docker.cpu_seconds(container) > 0.05, 60,
             lambda: f"its cgroup counted {docker.cpu_seconds(container)} s of CPU")
    finally:
        docker.remove(container)


def test_a_test_hosts_cpu_is_its_own_not_the_machines(testhosts: HostSet) -> None:
    """A systemd test host (the fleet bench's state host) mounts the whole cgroup v1 hierarchy,
    whose root counts every process on the machine: the read took that root, so the state
    host's CPU was the machine's, the bench's agents included. Two seconds of CPU spent
    outside it must not count; work inside it must."""
    container = docker.get(docker.client(), testhosts.hosts[0].name)
    before = docker.cpu_seconds(container)
    burn = "import time\nend = time.process_time() + 2\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    outside = docker.cpu_seconds(container) - before
    assert outside < 1.0, f"2 s of CPU outside the host counted as {outside:.2f} s of its own"
    code, _, err = docker.exec_argv(container, ["sh", "-c", "i=0; while [ $i -lt 300000 ]; "
                                                "do i=$((i+1)); done"])  # fmt: skip
    assert code == 0, err
    inside = docker.cpu_seconds(container) - before - outside
    assert inside > 0.05, f"a busy loop inside the host counted {inside:.3f} s"


def test_an_exec_answers_whole_under_a_burst_of_them(testhosts: HostSet) -> None:
    """The trusted channel into a container: each exec's code, stdout and stderr apart and
    whole, as a user, many at once (the SDK's exec lost what its HTTP reader had buffered:
    answers came back empty, or misread as "95 is not a valid stream", under load); a stopped
    container and a command that does not end are errors that say so."""
    from concurrent.futures import ThreadPoolExecutor

    handle = docker.client()
    container = docker.get(handle, testhosts.hosts[0].name)
    big = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo oops >&2; exit 3"

    def one(n: int) -> tuple[int, str, str]:
        return docker.exec_argv(container, ["sh", "-c", f"echo {n}; {big}"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(40)))
    for n, (code, out, err) in enumerate(answers):
        assert (code, out.splitlines()[0], len(out), err) == (3, str(n), len(f"{n}\n") + 200001,
                                                              "oops\n"), (n, code, err)
    assert docker.exec_argv(container, ["id", "-u"], user="nobody")[1].strip() == "65534"
    with pytest.raises(HostError, match="no end in 1 s"):
        docker.exec_argv(container, ["sleep", "30"], timeout=1.0)
    stopped = docker.run_container(handle, container.image.id, ["true"],
                                   name=f"{testhosts.name_prefix}-exec", entrypoint=[])
    try:
        poll(lambda: (stopped.reload(), stopped.status)[1] == "exited", 60, "it exits")
        with pytest.raises(HostError, match="is not running"):
            docker.exec_argv(stopped, ["true"])
    finally:
        docker.remove(stopped)
