"""The inventory loader: Nornir's inheritance, and errors that name file, host and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cluster.errors import ValidationError
from cluster.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]

DEFAULTS = """
username: deploy
data:
  state_repo: ssh://git@192.0.2.1/srv/state.git
  extra_specialties: [ml]
"""
GROUPS = """
backend:
  data: {specialties: [backend], max_tasks: 2}
small:
  data: {min_cpus: 2, min_memory_gb: 4}
"""


def write(root: Path, hosts: str, groups: str = GROUPS, defaults: str = DEFAULTS) -> Path:
    for name, text in (("hosts", hosts), ("groups", groups), ("defaults", defaults)):
        (root / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        load_inventory(root)
    return caught.value.problems


def test_shipped_example_is_valid_and_matches_nornir() -> None:
    inventory = load_inventory(ROOT / "inventory")
    assert len(inventory.hosts) >= 4
    assert all(
        h.hostname.startswith(("192.0.2.", "198.51.100.", "203.0.113.")) for h in inventory.hosts
    )
    nr = inventory.nornir()
    for host in inventory.hosts:
        theirs = nr.inventory.hosts[host.name]
        assert (theirs.hostname, theirs.port, theirs.username) == (
            host.hostname,
            host.port,
            host.username,
        )
        assert tuple(theirs["specialties"]) == host.specialties
        assert theirs["max_tasks"] == host.max_tasks
        assert theirs["min_cpus"] == host.thresholds.min_cpus
    assert {h.runtime for h in inventory.hosts} == {"systemd", "container"}


def test_host_beats_groups_beat_defaults(tmp_path: Path) -> None:
    inventory = load_inventory(
        write(
            tmp_path,
            """
        a:
          hostname: 192.0.2.10
          groups: [backend, small]
          data: {max_tasks: 3, min_disk_gb: 5}
        b:
          hostname: 192.0.2.11
          groups: [small, backend]
    """,
        )
    )
    a, b = inventory.hosts
    assert (a.max_tasks, a.specialties, a.username, a.port) == (3, ("backend",), "deploy", 22)
    assert (a.thresholds.min_cpus, a.thresholds.min_memory_gb) == (2, 4)
    assert (a.thresholds.min_disk_gb, a.thresholds.max_clock_skew_s) == (5, 5)  # host, default
    assert (b.max_tasks, b.thresholds.min_cpus) == (2, 2)
    assert inventory.known_specialties >= {"ml", "docs"}


def test_group_order_is_nornirs_depth_first(tmp_path: Path) -> None:
    groups = """
    a: {groups: ['1', '2']}
    b: {groups: ['2', '3']}
    '1': {groups: [X]}
    '2': {}
    '3': {}
    X: {data: {specialties: [backend]}}
    """
    inventory = load_inventory(write(tmp_path, "h: {hostname: h, groups: [a, b]}", groups))
    host = inventory.nornir_inventory.hosts["h"]
    assert [g.name for g in host.extended_groups()] == ["a", "1", "X", "2", "b", "3"]


def test_defaults_thresholds_when_nothing_lowers_them(tmp_path: Path) -> None:
    host = load_inventory(write(tmp_path, "a: {hostname: h1, groups: [backend]}")).hosts[0]
    assert host.thresholds.model_dump() == {
        "min_cpus": 4, "min_memory_gb": 16, "min_disk_gb": 20, "max_clock_skew_s": 5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("a: {hostname: h, groups: [backend], data: {specialties: [cooking]}}",
         "hosts.yaml: host 'a': field 'data.specialties': unknown specialty 'cooking'"),
        ("a: {hostname: h, port: 70000, groups: [backend]}",
         "hosts.yaml: host 'a': field 'port': Input should be less than or equal to 65535"),
        ("a: {hostname: h, groups: [backend], colour: red}",
         "hosts.yaml: host 'a': unknown key 'colour'"),
        ("a: {hostname: h, groups: [backend], data: {max_task: 2}}",
         "hosts.yaml: host 'a': unknown key 'data.max_task' (known: specialties, max_tasks"),
        ("a: {groups: [backend]}", "hosts.yaml: host 'a': missing field 'hostname'"),
        ("a: {hostname: h}", "hosts.yaml: host 'a': missing field 'data.specialties'"),
        ("a: {hostname: h, groups: [nope]}",
         "hosts.yaml: host 'a': field 'groups': unknown group 'nope'"),
        ("a: {hostname: h, groups: [backend], data: {runtime: vm}}",
         "hosts.yaml: host 'a': field 'data.runtime': Input should be 'systemd' or 'container'"),
        ("a: {hostname: h, groups: [backend], data: {state_repo: 'https://u:pw@e.com/s.git'}}",
         "field 'data.state_repo': the URL carries a password: secrets never live in the"),
        ("A/b: {hostname: h, groups: [backend]}", "hosts.yaml: host 'A/b': bad host name"),
    ],
)  # fmt: skip
def test_errors_name_file_host_and_field(tmp_path: Path, hosts: str, expected: str) -> None:
    found = problems(write(tmp_path, hosts))
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_duplicate_host_names_the_lines(tmp_path: Path) -> None:
    root = write(tmp_path, "a: {hostname: h1, groups: [backend]}\na: {hostname: h2}\n")
    assert problems(root) == ["duplicate host 'a' (line 1 and again line 2)"]
    with pytest.raises(ValidationError, match=str(root / "hosts.yaml")):
        load_inventory(root)


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("groups", "backend:\n  data: {specialties: [backend]}\n  data: {max_tasks: 2}\n",
         "duplicate key 'data' (line 2 and again line 3)"),
        ("hosts", "a:\n  hostname: h\n  data: {max_tasks: 1, max_tasks: 2}\n",
         "duplicate key 'max_tasks' (line 3 and again line 3)"),
        ("defaults", "username: deploy\nusername: root\n",
         "duplicate key 'username' (line 1 and again line 2)"),
        ("hosts", "a:\n  hostname: h\n  port: " + "9" * 5000 + "\n",
         "YAML error at line 3, column 9: cannot read this int: Exceeds the limit"),
        ("groups", "backend:\n  data: {max_tasks: " + "1" * 5000 + "}\n",
         "YAML error at line 2, column 21: cannot read this int: Exceeds the limit (4300 digits)"
         " for integer string conversion (group 'backend')"),
        ("defaults", "username: deploy\nport: 2001-02-30\n",
         "YAML error at line 2, column 7: cannot read this timestamp"),
        ("hosts", "a: [\n", "YAML error at line 2, column 1: did not find expected node"),
    ],
)  # fmt: skip
def test_bad_yaml_names_file_and_line(tmp_path: Path, file: str, text: str, expected: str) -> None:
    """Inventory files go through yamlio's strict loader: a ValidationError, not a traceback."""
    write(tmp_path, "a: {hostname: h, groups: [backend]}")
    (tmp_path / f"{file}.yaml").write_text(text)
    with pytest.raises(ValidationError) as caught:
        load_inventory(tmp_path)
    assert caught.value.where == str(tmp_path / f"{file}.yaml")
    [problem] = caught.value.problems
    assert problem.startswith(expected), problem
    assert "\n" not in problem and "9" * 100 not in problem


def test_duplicate_address_names_both_hosts(tmp_path: Path) -> None:
    found = problems(
        write(
            tmp_path,
            """
        a: {hostname: 192.0.2.10, groups: [backend]}
        b: {hostname: 192.0.2.10, port: 22, groups: [backend]}
        c: {hostname: 192.0.2.10, port: 2222, groups: [backend]}
    """,
        )
    )
    assert found == ["hosts.yaml: host 'b': duplicate host: 192.0.2.10:22 is also host 'a'"]


@pytest.mark.parametrize(
    ("file", "text", "path"),
    [
        ("hosts", "a: {hostname: h, groups: [backend], password: hunter2}", "a.password"),
        ("hosts", "a: {hostname: h, groups: [backend], data: {github_token: x}}",
         "a.data.github_token"),
        ("groups", "backend: {data: {ANTHROPIC_API_KEY: x}}", "backend.data.ANTHROPIC_API_KEY"),
        ("defaults", "data: {labels: {note: sk-ant-api03-abc}}", "data.labels.note"),
    ],
)  # fmt: skip
def test_secrets_are_refused(tmp_path: Path, file: str, text: str, path: str) -> None:
    write(tmp_path, "a: {hostname: h, groups: [backend]}")
    (tmp_path / f"{file}.yaml").write_text(text)
    found = problems(tmp_path)
    assert found == [
        f"{file}.yaml: {path!r} looks like a secret: secrets never live in the inventory "
        "(they are deployed to /etc/claude-cluster/secrets.env, mode 0600)"
    ]
    assert "hunter2" not in str(found) and "sk-ant" not in str(found)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        write(
            tmp_path,
            """
        a: {hostname: h, port: 0, groups: [backend]}
        b: {hostname: h, groups: [backend], data: {max_tasks: 0}}
    """,
        )
    )
    assert len(found) == 2
    assert found[0].startswith("hosts.yaml: host 'a': field 'port'")
    assert found[1].startswith("hosts.yaml: host 'b': field 'data.max_tasks'")


def test_group_cycle_and_missing_directory(tmp_path: Path) -> None:
    groups = "x: {groups: [y]}\ny: {groups: [x]}\n"
    found = problems(write(tmp_path, "a: {hostname: h, groups: [x]}", groups=groups))
    assert found[0] == "groups.yaml: group 'x': groups form a cycle: x -> y -> x"
    assert problems(tmp_path / "nothing") == ["no hosts.yaml: not an inventory directory"]


def test_extra_specialties_only_in_defaults(tmp_path: Path) -> None:
    ok = load_inventory(write(tmp_path, "a: {hostname: h, data: {specialties: [ml, docs]}}"))
    assert ok.hosts[0].specialties == ("ml", "docs")
    bad = "a: {hostname: h, data: {specialties: [ml], extra_specialties: [x]}}"
    assert "unknown key 'data.extra_specialties'" in problems(write(tmp_path, bad))[0]
