"""The pure parts of the test-host tooling: mirror discovery, recipe, rootfs edits, inventory."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.errors import ClusterError, ConfigError
from cluster.testhosts.inventory import render_inventory
from cluster.testhosts.limits import MARGIN, PER_HOST, ensure_inotify, inotify_in_use
from cluster.testhosts.mirror import apt_entries, choose_mirror, deb822_entries, one_line_entries
from cluster.testhosts.model import HostRecord, StatePaths
from cluster.testhosts.readiness import NotReady, poll
from cluster.testhosts.recipe import Recipe, RemoveGlob, Symlink, WriteFile
from cluster.testhosts.rootfs import apply_edits
from cluster.transport import docker
from cluster.transport.errors import reason
from cluster.transport.sshkeys import known_hosts_lines, parse_public_keys, replace_host

DEB822 = """\
# disabled first, so order alone does not decide
Types: deb
URIs: http://disabled.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror-a.invalid/debian
  http://mirror-b.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror-a.invalid/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# deb http://commented.invalid/debian bookworm main
deb-src http://src.invalid/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://opts.invalid/debian bookworm main
deb http://plain.invalid/debian bookworm-updates main  # trailing comment
"""


def test_deb822_skips_disabled_and_keeps_every_uri() -> None:
    entries = list(deb822_entries(DEB822))
    assert entries[0] == ("http://mirror-a.invalid/debian", ["bookworm", "bookworm-updates"])
    assert entries[1][0] == "http://mirror-b.invalid/debian"
    assert all("disabled" not in uri for uri, _ in entries)


def test_mirror_is_the_one_serving_the_suite_itself() -> None:
    assert choose_mirror(deb822_entries(DEB822), "bookworm") == "http://mirror-a.invalid/debian"


def test_one_line_sources_with_options_and_comments() -> None:
    entries = list(one_line_entries(ONE_LINE))
    assert entries == [
        ("http://opts.invalid/debian", ["bookworm"]),
        ("http://plain.invalid/debian", ["bookworm-updates"]),
    ]
    assert choose_mirror(entries, "bookworm") == "http://opts.invalid/debian"


def test_no_source_for_the_suite_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bookworm"):
        choose_mirror(one_line_entries("deb cdrom:[x]/ bookworm main\n"), "bookworm")


def test_apt_dir_is_read_in_apts_order(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://first.invalid/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "a.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "b.list.disabled").write_text(ONE_LINE)
    uris = [uri for uri, _ in apt_entries(tmp_path)]
    assert uris[0] == "http://first.invalid/debian"
    assert "http://opts.invalid/debian" not in uris


def test_recipe_digest_is_stable_and_tracks_every_field() -> None:
    base = Recipe()
    assert base.digest() == Recipe().digest()
    assert base.image_tag() == f"ccc-testhost:bookworm-{base.digest()[:12]}"
    assert Recipe(packages=(*base.packages, "curl")).digest() != base.digest()
    assert Recipe(edits=(*base.edits, RemoveGlob("/x"))).digest() != base.digest()
    # Same path and text, other kind of edit: still another recipe.
    as_file, as_link = Recipe(edits=(WriteFile("/a", "b"),)), Recipe(edits=(Symlink("/a", "b"),))
    assert as_file.digest() != as_link.digest()


def test_debootstrap_argv_and_import_changes(tmp_path: Path) -> None:
    recipe = Recipe()
    argv = recipe.debootstrap_argv(tmp_path, "http://m.invalid/debian")
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert "openssh-server" in argv[2] and "ca-certificates" in argv[2]
    assert argv[3:] == ["bookworm", str(tmp_path), "http://m.invalid/debian"]
    assert recipe.import_changes() == ['CMD ["/sbin/init"]']


def _fake_rootfs(root: Path) -> None:
    (root / "etc/ssh").mkdir(parents=True)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "sshd_config"):
        (root / "etc/ssh" / name).write_text("x")
    (root / "etc/machine-id").write_text("0123456789abcdef\n")


def test_rootfs_edits_leave_no_host_keys_and_an_empty_machine_id(tmp_path: Path) -> None:
    _fake_rootfs(tmp_path)
    recipe = Recipe()
    apply_edits(tmp_path, recipe.edits)
    apply_edits(tmp_path, recipe.edits)  # a second pass changes nothing and does not fail
    assert sorted(p.name for p in (tmp_path / "etc/ssh").iterdir()) == ["sshd_config"]
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert stat.S_IMODE((tmp_path / "root/.ssh").stat().st_mode) == 0o700
    wants = tmp_path / "etc/systemd/system/ssh.service.wants/ccc-ssh-host-keys.service"
    assert str(wants.readlink()) == "/etc/systemd/system/ccc-ssh-host-keys.service"
    unit = (tmp_path / "etc/systemd/system/ccc-ssh-host-keys.service").read_text()
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit and "Before=ssh.service" in unit


def test_rootfs_edit_cannot_escape_through_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "rootfs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(ClusterError, match="outside"):
        apply_edits(root, [WriteFile("/etc/passwd", "pwned")])
    assert not (outside / "passwd").exists()


def test_inventory_renders_nornir_simple_inventory(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    hosts = [HostRecord("h-1", 40001, "172.29.231.2"), HostRecord("h-2", 40002, "172.29.231.3")]
    files = {name: yaml.safe_load(text) for name, text in render_inventory(hosts, paths).items()}
    assert set(files) == {"hosts.yaml", "groups.yaml", "defaults.yaml"}
    first = files["hosts.yaml"]["h-1"]
    assert (first["hostname"], first["port"], first["username"]) == ("127.0.0.1", 40001, "root")
    assert first["data"]["container"] == "h-1"
    assert first["data"]["network_ip"] == "172.29.231.2"
    assert first["groups"] == ["testhosts"] and "testhosts" in files["groups.yaml"]
    assert files["defaults.yaml"]["data"]["known_hosts_file"] == str(paths.known_hosts)
    assert files["defaults.yaml"]["data"]["ssh_key_file"] == str(paths.private_key)


def test_inventory_of_no_hosts_is_still_valid_yaml(tmp_path: Path) -> None:
    assert yaml.safe_load(render_inventory([], StatePaths(tmp_path))["hosts.yaml"]) == {}


def test_public_keys_sorted_ed25519_first_and_known_hosts_replaced() -> None:
    pub = "ssh-rsa BBB root@x\necdsa-sha2-nistp256 CCC root@x\nssh-ed25519 AAA root@x\n"
    keys = parse_public_keys(pub)
    assert keys[0] == ("ssh-ed25519", "AAA")
    old = "[127.0.0.1]:1 ssh-ed25519 OLD\n[127.0.0.1]:2 ssh-ed25519 KEEP\n"
    new = replace_host(old, "[127.0.0.1]:1", known_hosts_lines("[127.0.0.1]:1", keys[:1]))
    assert new == "[127.0.0.1]:2 ssh-ed25519 KEEP\n[127.0.0.1]:1 ssh-ed25519 AAA\n"


def test_poll_fails_loudly_with_the_last_state() -> None:
    with pytest.raises(NotReady, match="last seen: starting"):
        poll(lambda: (False, "starting"), what="h-1 systemd", timeout=0)
    assert poll(lambda: (True, "running"), what="h-1", timeout=0) == "running"


def test_transport_reasons_are_short_and_clear() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert reason(refused) == "connection refused"
    assert reason(TimeoutError()) == "timed out"
    closed = OSError("Error reading SSH protocol banner")
    closed.__cause__ = EOFError()
    assert reason(closed).startswith("connection closed by the remote end")


def test_test_hosts_can_run_the_sandbox_and_systemd_credentials() -> None:
    recipe = Recipe()
    assert "bubblewrap" in recipe.packages
    units = {e.path: e.content for e in recipe.edits if isinstance(e, WriteFile)}
    shared = units["/etc/systemd/system/ccc-shared-mounts.service"]
    assert "ExecStart=/bin/mount --make-rshared /" in shared  # or LoadCredential= shows nothing
    links = {e.path: e.target for e in recipe.edits if isinstance(e, Symlink)}
    wants = "/etc/systemd/system/sysinit.target.wants/ccc-shared-mounts.service"
    assert links[wants] == "/etc/systemd/system/ccc-shared-mounts.service"


class _Api:
    _version = "1.41"

    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.created = kwargs
        return {"Id": "c1"}


class _Started:
    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True


class _Handle:
    def __init__(self) -> None:
        self.api, self.container = _Api(), _Started()
        self.containers = self

    def get(self, ident: str) -> _Started:
        assert ident == "c1"
        return self.container


@pytest.mark.parametrize("unmask", [True, False])
def test_run_container_takes_docker_runs_systempaths_option(unmask: bool) -> None:
    handle = _Handle()
    options = ["no-new-privileges:true", *([docker.UNMASKED] if unmask else [])]
    started = docker.run_container(handle, "img", ["/sbin/init"], name="h", detach=True,
                                   security_opt=options, read_only=True)  # fmt: skip
    host = handle.api.created["host_config"]
    assert started.started and handle.api.created["image"] == "img"
    assert host["SecurityOpt"] == ["no-new-privileges:true"] and host["ReadonlyRootfs"] is True
    if unmask:  # what `docker run --security-opt systempaths=unconfined` sends
        assert host["MaskedPaths"] == [] and host["ReadonlyPaths"] == []
    else:
        assert "MaskedPaths" not in host and "ReadonlyPaths" not in host


def test_inotify_room_is_made_before_hosts_start(tmp_path: Path) -> None:
    """30 hosts on the kernel's default of 128 instances: raised as root, else a refusal that
    names the command; a limit with room is left alone."""
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    assert ensure_inotify(5, limit, euid=0, in_use=4) == 128  # 4 + 40 + 64 fit: untouched
    assert limit.read_text() == "128\n"
    with pytest.raises(ClusterError, match=r"sudo sysctl -w fs.inotify.max_user_instances=1024"):
        ensure_inotify(30, limit, euid=1000, in_use=4)
    assert limit.read_text() == "128\n"  # not ours to raise
    assert ensure_inotify(30, limit, euid=0, in_use=4) == 1024
    assert limit.read_text() == "1024\n"
    assert ensure_inotify(200, limit, euid=0, in_use=4) == 4 + 200 * PER_HOST + MARGIN


def test_inotify_instances_in_use_are_counted_from_proc(tmp_path: Path) -> None:
    """Counted over a /proc that shows this process alone: every other process of the user (a
    parallel tier's agents, their watches, test hosts' systemd) opens and closes its own
    meanwhile, and a count of them all moved by three between two reads in CI."""
    import ctypes

    mine = tmp_path / "proc"
    mine.mkdir()
    (mine / str(os.getpid())).symlink_to(f"/proc/{os.getpid()}")
    libc = ctypes.CDLL(None, use_errno=True)
    before = inotify_in_use(proc=mine)
    fd = libc.inotify_init()
    assert fd >= 0
    try:
        assert inotify_in_use(proc=mine) == before + 1
        assert inotify_in_use() >= before + 1  # all of the user's: ours among them
    finally:
        os.close(fd)
