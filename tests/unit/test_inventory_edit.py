"""Comment-preserving edits of hosts.yaml: add and remove keep everything else byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cluster.errors import ConfigError, ValidationError
from cluster.inventory import load_inventory
from cluster.inventory.edit import add_host, remove_host, restore_hosts
from cluster.ops.addagent import NewAgent, default_name, problems

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "inventory")
    return tmp_path / "inventory"


def test_add_appends_and_keeps_every_other_byte(inventory: Path):
    before = (inventory / "hosts.yaml").read_text()
    original = add_host(inventory, "agent-new-1", {"hostname": "10.1.2.3", "port": 2222,
                                                   "data": {"specialties": ["backend"]}})
    after = (inventory / "hosts.yaml").read_text()
    assert original == before.encode()
    assert after.startswith(before)
    assert after[len(before):] == ("\nagent-new-1:\n  hostname: 10.1.2.3\n  port: 2222\n"
                                   "  data:\n    specialties: [backend]\n")
    spec = load_inventory(inventory).host("agent-new-1")
    assert (spec.address, spec.specialties) == ("10.1.2.3:2222", ("backend",))
    restore_hosts(inventory, original)
    assert (inventory / "hosts.yaml").read_text() == before


def test_remove_keeps_comments_and_order_of_the_rest(inventory: Path):
    text = (inventory / "hosts.yaml").read_text()
    text = text.replace("agent-web-1:", "# the web host, kept\nagent-web-1:")
    (inventory / "hosts.yaml").write_text(text)
    remove_host(inventory, "agent-backend-2")
    after = (inventory / "hosts.yaml").read_text()
    assert "agent-backend-2" not in after and "192.0.2.11" not in after
    assert "# the web host, kept\nagent-web-1:" in after
    assert "# on the host: lists are not merged from groups" in after
    assert after.startswith(text.split("agent-backend-1:")[0])
    names = load_inventory(inventory).names
    assert names == ("agent-backend-1", "agent-web-1", "agent-fullstack-1", "agent-docs-1")


def test_invalid_result_is_refused_and_the_file_untouched(inventory: Path):
    before = (inventory / "hosts.yaml").read_bytes()
    with pytest.raises(ValidationError, match=r"duplicate host: 192\.0\.2\.10:22"):
        add_host(inventory, "twin", {"hostname": "192.0.2.10", "groups": ["backend"]})
    with pytest.raises(ValidationError, match="unknown group 'nope'"):
        add_host(inventory, "x", {"hostname": "10.0.0.9", "groups": ["nope"]})
    with pytest.raises(ValidationError, match="already exists"):
        add_host(inventory, "agent-docs-1", {"hostname": "10.0.0.9"})
    with pytest.raises(ConfigError, match="no host named 'ghost'"):
        remove_host(inventory, "ghost")
    assert (inventory / "hosts.yaml").read_bytes() == before


def test_add_to_an_empty_file(inventory: Path):
    (inventory / "hosts.yaml").write_text("")
    add_host(inventory, "only", {"hostname": "10.0.0.1", "groups": ["backend"]})
    assert (inventory / "hosts.yaml").read_text() == (
        "only:\n  hostname: 10.0.0.1\n  groups: [backend]\n")
    remove_host(inventory, "only")
    assert load_inventory(inventory).names == ()


def test_add_agent_request_problems(inventory: Path):
    found = load_inventory(inventory)
    ok = NewAgent("10.9.9.9", "backend", "agent-x")
    assert problems(found, ok) == []
    bad = NewAgent("10.9.9", "cooking", "agent-docs-1", port=22, max_tasks=99, runtime="vm")
    messages = problems(found, bad)
    assert messages[0] == "--ip '10.9.9' is not an IPv4 or IPv6 address"
    assert messages[1].startswith("--specialty 'cooking' is unknown (known: backend, data, devops")
    assert "--name 'agent-docs-1' is already a host" in messages[2]
    assert "--runtime 'vm'" in messages[3] and "--max-tasks 99" in messages[4]
    taken = problems(found, NewAgent("192.0.2.10", "backend", "agent-y", port=22))
    assert taken == ["192.0.2.10:22 is already host 'agent-backend-1'"]
    assert problems(found, NewAgent("::1", "ml", "Bad Name"))[0].startswith("--name 'Bad Name'")
    assert default_name(found, "backend") == "agent-backend-3"
