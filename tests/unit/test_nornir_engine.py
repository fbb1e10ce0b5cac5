"""Nornir as the engine: the inventory plugin, --limit as a filter, the progress processor, and
AggregatedResult deciding a run's outcome (rolling batches included). Real Nornir, no hosts:
the tasks run here are plain Nornir tasks that return what a host's deploy would."""

from __future__ import annotations

import io
import re
import textwrap
import threading
import tomllib
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from nornir import InitNornir
from nornir.core.filter import F
from nornir.core.plugins.inventory import InventoryPluginRegister
from nornir.core.task import Result, Task
from rich.console import Console

from cluster.deploy.hostrun import Steps, host_result
from cluster.deploy.outcome import HostOutcome, RunContext, Status
from cluster.deploy.run import RunOutcomes, run_hosts
from cluster.deploy.settings import DeploySettings
from cluster.deploy.summary import LiveProgress
from cluster.errors import ConfigError, ValidationError
from cluster.inventory import load_inventory
from cluster.inventory.limit import limit_filter, limited, select
from cluster.inventory.model import AgentHost, Inventory, spec_of
from cluster.inventory.plugin import PLUGIN_NAME, ClusterInventory

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = """
username: deploy
port: 2200
data: {state_repo: 'ssh://git@192.0.2.1/srv/state.git', max_tasks: 1, min_cpus: 1}
"""
GROUPS = """
backend: {groups: [fast], data: {specialties: [backend], max_tasks: 2}}
docs: {port: 2300, data: {specialties: [docs], max_tasks: 3, min_cpus: 3}}
fast: {username: fast, data: {min_cpus: 8, labels: {tier: fast}}}
"""
HOSTS = """
a: {hostname: 192.0.2.10, groups: [backend, docs], data: {max_tasks: 5}}
b: {hostname: 192.0.2.11, groups: [docs, backend]}
c: {hostname: 192.0.2.12, port: 22, groups: [docs]}
"""


def write(root: Path, hosts: str = HOSTS, groups: str = GROUPS) -> Path:
    for name, text in (("hosts", hosts), ("groups", groups), ("defaults", DEFAULTS)):
        (root / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def init(root: Path) -> Any:
    return InitNornir(inventory={"plugin": PLUGIN_NAME, "options": {"path": str(root)}},
                      logging={"enabled": False})  # fmt: skip


# --- the inventory plugin ----------------------------------------------------------------


def test_the_registered_plugin_resolves_through_init_nornir(tmp_path: Path) -> None:
    assert InventoryPluginRegister.get_plugin(PLUGIN_NAME) is ClusterInventory
    nr = init(write(tmp_path))
    assert list(nr.inventory.hosts) == ["a", "b", "c"]
    assert list(nr.inventory.groups) == ["backend", "docs", "fast"]
    host = nr.inventory.hosts["a"]
    assert isinstance(host, AgentHost) and spec_of(host).name == "a"


def test_the_entry_point_names_the_same_plugin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    points = project["project"]["entry-points"]["nornir.plugins.inventory"]
    point = EntryPoint(PLUGIN_NAME, points[PLUGIN_NAME], "nornir.plugins.inventory")
    assert point.load() is ClusterInventory


def test_inheritance_is_nornirs_host_then_groups_in_order_then_defaults(tmp_path: Path) -> None:
    nr = init(write(tmp_path))
    a, b, c = (nr.inventory.hosts[name] for name in "abc")
    # Nornir itself: a's groups are backend, fast (backend's parent), docs in that order
    assert [g.name for g in a.extended_groups()] == ["backend", "fast", "docs"]
    assert (a["max_tasks"], b["max_tasks"], c["max_tasks"]) == (5, 3, 3)  # host > first group
    assert (a.username, a.port, b.port, c.port) == ("fast", 2300, 2300, 22)
    # and the HostSpec each host carries is what Nornir resolved, not a second resolution
    for host in (a, b, c):
        spec = spec_of(host)
        assert (spec.hostname, spec.port, spec.username) == (host.hostname, host.port,
                                                             host.username)  # fmt: skip
        assert (spec.max_tasks, list(spec.specialties)) == (host["max_tasks"], host["specialties"])
        assert spec.thresholds.min_cpus == host["min_cpus"]
        assert spec.labels == host.get("labels", {})
    assert spec_of(a).specialties == ("backend",) and spec_of(b).specialties == ("docs",)
    assert (spec_of(a).thresholds.min_cpus, spec_of(b).thresholds.min_cpus) == (8, 3)
    assert spec_of(c).username == "deploy" and spec_of(c).thresholds.min_cpus == 3


def test_load_inventory_is_the_plugins_nornir_inventory(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path))
    assert inventory.names == ("a", "b", "c")
    assert inventory.hosts == tuple(spec_of(h) for h in inventory.nornir_inventory.hosts.values())
    assert inventory.host("b").max_tasks == 3
    with pytest.raises(KeyError):
        inventory.host("nope")
    nr = inventory.nornir(num_workers=3)
    assert nr.inventory is inventory.nornir_inventory and nr.runner.num_workers == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("hosts", "groups", "expected"),
    [
        ("a: {hostname: h, groups: [nope]}", GROUPS,
         "hosts.yaml: host 'a': field 'groups': unknown group 'nope'"),
        ("a: {hostname: h, groups: [x]}", "x: {groups: [y]}\ny: {groups: [x]}\n",
         "groups.yaml: group 'x': groups form a cycle: x -> y -> x"),
        ("a: {hostname: h, groups: [backend], data: {specialties: [cooking]}}", GROUPS,
         "hosts.yaml: host 'a': field 'data.specialties': unknown specialty 'cooking'"),
        ("a: {hostname: h, groups: [backend], password: x}", GROUPS,
         "hosts.yaml: 'a.password' looks like a secret"),
        ("a: {hostname: h, groups: [docs]}\nb: {hostname: h, groups: [docs]}", GROUPS,
         "hosts.yaml: host 'b': duplicate host: h:2300 is also host 'a'"),
    ],
)  # fmt: skip
def test_the_plugin_refuses_a_bad_inventory_with_the_loaders_words(
    tmp_path: Path, hosts: str, groups: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        init(write(tmp_path, hosts, groups))
    assert caught.value.where == str(tmp_path)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_a_cycle_reached_from_another_group_names_the_whole_chain(tmp_path: Path) -> None:
    groups = "z: {groups: [x]}\nx: {groups: [y]}\ny: {groups: [x]}\n"
    with pytest.raises(ValidationError) as caught:
        init(write(tmp_path, "a: {hostname: h, groups: [z]}", groups))
    assert caught.value.problems == [
        "groups.yaml: group 'z': groups form a cycle: z -> x -> y -> x"
    ]


# --- --limit as a Nornir filter ----------------------------------------------------------


def test_limit_selects_hosts_by_name_or_by_the_groups_they_list(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path))
    assert [h.name for h in select(inventory, [])] == ["a", "b", "c"]
    assert [h.name for h in select(inventory, ["c"])] == ["c"]
    assert [h.name for h in select(inventory, ["backend"])] == ["a", "b"]
    assert [h.name for h in select(inventory, ["c", "backend"])] == ["a", "b", "c"]
    assert list(limited(inventory, ["docs"]).inventory.hosts) == ["a", "b", "c"]
    assert limit_filter(inventory, ["a", "docs"]) == F(name__any=["a", "docs"]) | F(
        groups__any=["a", "docs"])  # fmt: skip


def test_limit_refuses_names_that_are_neither_host_nor_group(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path))
    with pytest.raises(ConfigError, match=r"^--limit: no host or group named fast, nope$"):
        select(inventory, ["a", "nope", "fast"])  # fast: a parent group only, no host lists it


# --- the processor -----------------------------------------------------------------------


def test_the_processor_draws_nornir_events_and_the_steps_reported(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    seen: dict[str, list[str]] = {}
    lock = threading.Lock()

    def step(task: Task, progress: LiveProgress) -> Result:
        with lock:
            seen.setdefault(task.host.name, []).append(progress.lines()[task.host.name])
        return Result(host=task.host, failed=task.host.name == "b")

    def deploy(task: Task, progress: LiveProgress) -> Result:
        with lock:
            seen.setdefault(task.host.name, []).append(progress.lines()[task.host.name])
        progress.report(task.host.name, "connect")
        task.run(step, name="facts", progress=progress)  # b's failed subtask raises here
        progress.report(task.host.name, "changed")  # what hostrun reports at the end
        return host_result(task, HostOutcome(task.host.name, "changed"))

    with LiveProgress(console, inventory.names, "deploy") as progress:
        assert progress.lines() == {"": "0/3", "a": "a: waiting", "b": "b: waiting",
                                    "c": "c: waiting"}  # fmt: skip
        result = inventory.nornir().with_processors([progress]).run(deploy, progress=progress)
        lines = progress.lines()
    assert seen["a"] == ["a: deploy", "a: facts"]  # task_instance_started, subtask started
    # a task's end draws its outcome (counted once though hostrun reported it too); a task that
    # raised draws "failed"
    assert lines == {"": "3/3", "a": "a: changed", "b": "b: failed", "c": "c: changed"}
    assert result.failed_hosts.keys() == {"b"}
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "a: changed" in frames and "3/3" in frames and "deploy" in frames


def test_without_a_terminal_each_host_that_ends_is_a_plain_line(tmp_path: Path) -> None:
    out = io.StringIO()
    with LiveProgress(Console(file=out, force_terminal=False), ["a"], "deploy") as progress:
        progress.report("a", "connect")
        progress.report("a", "ok")
        progress.report("a", "ok")  # counted (and printed) once
        progress.report("ghost", "ok")  # a host not in the run is ignored
        assert progress.lines() == {"": "1/1", "a": "a: ok"}
    assert re.fullmatch(r"\[1/1\] a \.\.\. ok \(\d+\.\ds\)\n", out.getvalue()), out.getvalue()


def test_hostruns_steps_are_subtasks_whose_errors_come_out_as_themselves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inventory = load_inventory(write(tmp_path))
    drawn: dict[str, list[str]] = {}
    lock = threading.Lock()
    caught: dict[str, BaseException] = {}

    class Recorder(LiveProgress):
        def report(self, host: str, what: str) -> None:
            with lock:
                drawn.setdefault(host, []).append(what)
            super().report(host, what)

    def deploy(task: Task) -> Result:
        steps = Steps(task)
        assert steps("facts", lambda: 42) == 42  # a step's value comes back
        try:
            steps("apply", partial_fail(task.host.name), phase="switch")
        except Exception as exc:
            caught[task.host.name] = exc
        return host_result(task, HostOutcome(task.host.name, "ok", phases=steps.phases()))

    with Recorder(Console(file=io.StringIO()), inventory.names, "deploy") as progress:
        result = inventory.nornir().with_processors([progress]).run(deploy)
    for host in ("a", "b", "c"):
        assert drawn[host][:3] == ["deploy", "facts", "apply"], drawn[host]  # every step drawn
        assert [r.name for r in result[host]] == ["deploy", "facts", "apply"]
        assert {k for k, _ in result[host][0].result.phases} == {"facts", "switch"}
    assert "a" not in caught and not result["a"][2].failed
    assert isinstance(caught["b"], ConfigError) and str(caught["b"]) == "b: refused"
    assert result["b"][2].failed and result["b"][2].exception is caught["b"]
    assert "apply failed" in drawn["b"]
    # a host problem is the step's Result, not a traceback in the log; a bug is logged by Nornir
    assert isinstance(caught["c"], ZeroDivisionError)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("nornir")]
    assert any("'apply' failed" in m and "ZeroDivisionError" in m for m in logged), logged
    assert not any("refused" in m for m in logged), logged


def partial_fail(host: str) -> Callable[[], None]:
    def work() -> None:
        if host == "b":
            raise ConfigError("b: refused")
        if host == "c":
            _ = 1 / 0

    return work


# --- AggregatedResult decides; rolling batches -------------------------------------------


def context(tmp_path: Path, **settings: Any) -> RunContext:
    s = DeploySettings(root=tmp_path, inventory=tmp_path, work_dir=tmp_path / "work", **settings)
    return RunContext(s, lambda host: pytest.fail("no wanted state here"),
                      threading.BoundedSemaphore(2), None)  # fmt: skip


def host_task(statuses: dict[str, Status]) -> Callable[..., Result]:
    """A Nornir task standing for one host's deploy: ends as ``statuses`` says (ok otherwise);
    a host marked "raise" raises, as a bug would."""

    def deploy(task: Task, ctx: RunContext) -> Result:
        task.run(task=lambda t: Result(host=t.host), name="connect")  # a step, as hostrun's
        if task.host.name == "raise":
            raise RuntimeError("a bug")
        status = statuses.get(task.host.name, "ok")
        return host_result(task, HostOutcome(task.host.name, status, reason=status))

    return deploy


def rolling(tmp_path: Path, hosts: str) -> Inventory:
    return load_inventory(write(tmp_path, textwrap.dedent(hosts)))


FIVE = """
h1: {hostname: 192.0.2.1, groups: [docs]}
h2: {hostname: 192.0.2.2, groups: [docs]}
h3: {hostname: 192.0.2.3, groups: [docs]}
h4: {hostname: 192.0.2.4, groups: [docs]}
h5: {hostname: 192.0.2.5, groups: [docs]}
"""


def test_every_host_ok_or_changed_is_a_run_that_did_not_fail(tmp_path: Path) -> None:
    nornir = rolling(tmp_path, FIVE).nornir()
    result = run_hosts(nornir, context(tmp_path), host_task({"h2": "changed"}), "deploy")
    outcomes = RunOutcomes(result)
    assert not outcomes.failed and outcomes.failed_hosts == []
    assert [(o.host, o.status) for o in outcomes] == [
        ("h1", "ok"), ("h2", "changed"), ("h3", "ok"), ("h4", "ok"), ("h5", "ok")]  # fmt: skip
    assert result["h2"].changed and not result["h1"].changed


def test_a_failed_host_fails_the_run_and_the_other_hosts_still_run(tmp_path: Path) -> None:
    nornir = rolling(tmp_path, FIVE).nornir()
    outcomes = RunOutcomes(run_hosts(nornir, context(tmp_path), host_task({"h2": "failed"}),
                                     "deploy"))  # fmt: skip
    assert outcomes.failed and outcomes.failed_hosts == ["h2"]
    assert [o.status for o in outcomes] == ["ok", "failed", "ok", "ok", "ok"]


def test_a_failed_batch_skips_the_later_batches(tmp_path: Path) -> None:
    nornir = rolling(tmp_path, FIVE).nornir()
    ctx = context(tmp_path, batch=2)
    outcomes = RunOutcomes(run_hosts(nornir, ctx, host_task({"h3": "failed"}), "deploy"))
    assert [(o.host, o.status) for o in outcomes] == [
        ("h1", "ok"), ("h2", "ok"), ("h3", "failed"), ("h4", "ok"), ("h5", "skipped")]  # fmt: skip
    assert outcomes[4].reason == "not attempted: batch 2 had a failure (rolling deploy stops)"
    assert outcomes.failed and outcomes.failed_hosts == ["h3"]  # skipped is not failed


def test_batches_run_in_order_and_the_processor_sees_every_host(tmp_path: Path) -> None:
    inventory = rolling(tmp_path, FIVE)
    ctx = context(tmp_path, batch=2)
    with LiveProgress(Console(file=io.StringIO()), inventory.names, "deploy") as progress:
        nornir = inventory.nornir().with_processors([progress])
        outcomes = RunOutcomes(run_hosts(nornir, ctx, host_task({"h1": "failed"}), "deploy"))
        lines = progress.lines()
    assert [o.status for o in outcomes] == ["failed", "ok", "skipped", "skipped", "skipped"]
    assert lines == {"": "5/5", "h1": "h1: failed", "h2": "h2: ok", "h3": "h3: skipped",
                     "h4": "h4: skipped", "h5": "h5: skipped"}  # fmt: skip


def test_a_task_that_raises_is_a_failed_host_not_a_crash(tmp_path: Path) -> None:
    nornir = rolling(tmp_path, "raise: {hostname: 192.0.2.1, groups: [docs]}\n").nornir()
    outcomes = RunOutcomes(run_hosts(nornir, context(tmp_path), host_task({}), "deploy"))
    [outcome] = outcomes
    assert outcome.status == "failed" and outcome.reason == "internal error: RuntimeError('a bug')"
    assert outcomes.failed_hosts == ["raise"]
