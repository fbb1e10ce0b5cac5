"""Bulk bytes over the OpenSSH client (cluster.transport.openssh) against real sshd hosts: the
wheels' stream lands checked and whole, and ssh trusts exactly the known_hosts paramiko does."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import IO

import pytest

from cluster.deploy.remote import RECEIVE_WHEELS, HostOps
from cluster.errors import HostError, HostKeyMismatch
from cluster.testhosts.model import HostRecord, HostSet
from cluster.transport import connect, docker
from cluster.transport.openssh import SshTarget, feed
from cluster.units import layout

pytestmark = pytest.mark.integration

WHEEL_DIR = str(layout.WHEELS)


def _target(hosts: HostSet, host: HostRecord, known_hosts: Path | None = None) -> SshTarget:
    return SshTarget("127.0.0.1", host.port, "root", hosts.paths.private_key,
                     known_hosts or hosts.paths.known_hosts)  # fmt: skip


def _ops(hosts: HostSet, host: HostRecord) -> HostOps:
    conn = connect("127.0.0.1", host.port, "root", hosts.paths.private_key,
                   hosts.paths.known_hosts, timeout=30.0)  # fmt: skip
    return HostOps(host.name, conn, _target(hosts, host))


def _wheels(tmp_path: Path, **bodies: bytes) -> dict[str, str]:
    for name, body in bodies.items():
        (tmp_path / name).write_bytes(body)
    return {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}


def _listing(ops: HostOps, names: list[str]) -> str:
    """``sha256  name`` of each ``name`` in the wheel dir, and every .part file there."""
    script = f"cd {WHEEL_DIR} && sha256sum {' '.join(names)} 2>&1; ls -a | grep '[.]part$' || true"
    return ops.sh(["sh", "-c", script])


@pytest.fixture
def ops(testhosts: HostSet) -> HostOps:
    host_ops = _ops(testhosts, testhosts.hosts[0])
    host_ops.sh(["sh", "-c", f"mkdir -p {WHEEL_DIR} && rm -f {WHEEL_DIR}/t*.whl*"])
    return host_ops


def test_wheels_arrive_checked_and_in_place(testhosts: HostSet, ops: HostOps,
                                             tmp_path: Path) -> None:  # fmt: skip
    wheels = _wheels(tmp_path, **{"t1-1.0-py3-none-any.whl": b"one" * 100_000,
                                  "t2-1.0-py3-none-any.whl": b"two"})  # fmt: skip
    ops.push_wheels(tmp_path, wheels)
    seen = _listing(ops, sorted(wheels))
    for name, digest in wheels.items():
        assert f"{digest}  {name}" in seen
    assert ".part" not in seen
    modes = ops.sh(["stat", "-c", "%a %U", *(f"{WHEEL_DIR}/{n}" for n in sorted(wheels))])
    assert modes.split() == ["644", "root", "644", "root"]


def test_a_wheel_whose_bytes_differ_from_the_manifest_is_refused(
    testhosts: HostSet, ops: HostOps, tmp_path: Path
) -> None:
    name = "t3-1.0-py3-none-any.whl"
    good = _wheels(tmp_path, **{name: b"the release's bytes"})
    ops.push_wheels(tmp_path, good)
    (tmp_path / name).write_bytes(b"bytes changed after the manifest was made")
    with pytest.raises(HostError, match=f"{name}: sha256 .* expected {good[name]}"):
        ops.push_wheels(tmp_path, good)
    seen = _listing(ops, [name])
    assert f"{good[name]}  {name}" in seen, "the wheel already there must stay as it was"
    assert ".part" not in seen


@pytest.mark.parametrize("member", ["../escaped.whl", "t4-1.0-py3-none-any.whl/../../x",
                                    "unlisted.whl"])  # fmt: skip
def test_the_receiver_takes_only_the_manifests_files(testhosts: HostSet, ops: HostOps,
                                                     member: str) -> None:  # fmt: skip
    body = b"not a wheel of this release"
    args = {"wheels": {"t4-1.0-py3-none-any.whl": hashlib.sha256(body).hexdigest()},
            "dir": WHEEL_DIR, "part": ".part"}  # fmt: skip

    def write(stream: IO[bytes]) -> None:
        with tarfile.open(fileobj=stream, mode="w|") as archive:
            info = tarfile.TarInfo(member)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))

    with pytest.raises(HostError, match="refusing member"):
        feed(_target(testhosts, testhosts.hosts[0]),
             ["python3", "-c", RECEIVE_WHEELS, json.dumps(args)], write, 60.0)  # fmt: skip
    found = ops.sh(["sh", "-c", f"ls -a {WHEEL_DIR}/.. {WHEEL_DIR} / | grep -c -e escaped -e "
                                "unlisted -e '^x$' -e t4 || true"])  # fmt: skip
    assert found.strip() == "0"


def test_a_stream_cut_short_names_what_is_missing(testhosts: HostSet, tmp_path: Path) -> None:
    wheels = _wheels(tmp_path, **{"t5-1.0-py3-none-any.whl": b"five"})
    args = {"wheels": {**wheels, "t6-1.0-py3-none-any.whl": "0" * 64}, "dir": WHEEL_DIR,
            "part": ".part"}  # fmt: skip

    def write(stream: IO[bytes]) -> None:
        with tarfile.open(fileobj=stream, mode="w|") as archive:
            archive.add(
                str(tmp_path / "t5-1.0-py3-none-any.whl"), arcname="t5-1.0-py3-none-any.whl"
            )

    with pytest.raises(HostError, match=re.escape("without t6-1.0-py3-none-any.whl")):
        feed(_target(testhosts, testhosts.hosts[0]),
             ["python3", "-c", RECEIVE_WHEELS, json.dumps(args)], write, 60.0)  # fmt: skip


def test_ssh_refuses_a_host_missing_from_known_hosts(testhosts: HostSet, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = testhosts.hosts[0]
    marker = f"/tmp/openssh-unknown-{host.port}"
    with pytest.raises(HostError, match="host key not in") as caught:
        feed(_target(testhosts, host, empty), ["sh", "-c", f"cat > {marker}"],
             lambda stream: stream.write(b"x"), 60.0)  # fmt: skip
    assert not isinstance(caught.value, HostKeyMismatch)
    assert empty.read_text() == "", "a refused key must not be recorded"
    assert not _exists(host, marker), "the command ran on a host whose key nobody trusted"


def test_ssh_refuses_a_changed_host_key(testhosts: HostSet, rekeyed_host: HostRecord) -> None:
    marker = f"/tmp/openssh-rekeyed-{rekeyed_host.port}"
    with pytest.raises(HostKeyMismatch, match="host key changed"):
        feed(_target(testhosts, rekeyed_host), ["sh", "-c", f"cat > {marker}"],
             lambda stream: stream.write(b"x"), 60.0)  # fmt: skip
    assert not _exists(rekeyed_host, marker), "the command ran on a host with another key"


def _exists(host: HostRecord, path: str) -> bool:
    """Whether ``path`` is on ``host``, asked over docker exec (its sshd is the one on trial)."""
    code, _, _ = docker.exec_argv(docker.get(docker.client(), host.name), ["test", "-e", path])
    return code == 0


def test_a_command_past_its_time_is_stopped(testhosts: HostSet) -> None:
    with pytest.raises(HostError, match="timed out: sleep still running after 2s"):
        feed(_target(testhosts, testhosts.hosts[0]), ["sleep", "60"], lambda stream: None, 2.0)


def test_a_failing_command_says_its_stderr(testhosts: HostSet) -> None:
    with pytest.raises(HostError, match="sh exited 3: refused here"):
        feed(_target(testhosts, testhosts.hosts[0]), ["sh", "-c", "cat >/dev/null; "
                                                      "echo refused here >&2; exit 3"],
             lambda stream: stream.write(b"y" * 1_000_000), 60.0)  # fmt: skip
