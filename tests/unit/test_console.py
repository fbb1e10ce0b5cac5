"""Output that fits: tables at the terminal's width on one and never cut off one (or with
wide); progress drawn live on a terminal and as plain lines off one. Real repos, real
tables, the real ``claude-cluster status`` process with its stdout a pipe."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cluster.backup import create_backup, load_settings, restore
from cluster.cli.render import print_tables, status_tables, task_table
from cluster.console import StepProgress, fitted_width, print_fitted
from cluster.deploy.settings import load_settings as load_deploy_settings
from cluster.errors import ClusterError
from cluster.health.model import HostFacts, HostProbe
from cluster.health.render import print_health
from cluster.health.verdict import fleet_health, host_health
from cluster.ops.addagent import wait_for_heartbeat
from cluster.state.client import Held, Identity, StateClient
from cluster.state.records import Heartbeat
from cluster.state.report import status, task_rows
from tests.helpers import ROOT, commit_files, make_state, task_doc, task_files

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def long_id(kind: str, number: int) -> str:
    """A 64-character id (the longest ID_RULE allows), unlike any other's in every prefix."""
    head = f"{kind}{number}-"
    return head + "".join(f"{kind[0]}{number}{i % 10}" for i in range(64))[: 64 - len(head)]


def host_of(agent: str) -> str:
    return f"host-of-{agent}"[:64]


TASKS = [long_id("task", n) for n in range(3)]
AGENTS = [long_id("agent", n) for n in range(2)]


@pytest.fixture(scope="module")
def long_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state repo whose tasks and agents all have 64-character ids; agent 0 claims two."""
    tmp = tmp_path_factory.mktemp("long")
    repo = make_state(tmp)
    commit_files(repo, task_files([task_doc(t) for t in TASKS]), tmp / "person")
    for number, agent in enumerate(AGENTS):
        client = StateClient(str(repo), tmp / agent, Identity(agent))
        try:
            snap = client.snapshot()
            claims = [client.claim(snap, snap.tasks[t], 600) for t in TASKS[:2] if number == 0]
            holding = tuple(h.key for h in claims if isinstance(h, Held))
            assert holding == (tuple(TASKS[:2]) if number == 0 else ()), claims
            now = time.time()
            beat = Heartbeat(id=agent, host=host_of(agent), pid=1, version="0",
                             specialties=("backend",), max_tasks=2, holding=holding,
                             state="running", started_at=now, last_seen=now,
                             heartbeat_seconds=600.0)  # fmt: skip
            assert client.renew([], beat, None)[2] is not None
        finally:
            client.close()
    return repo


@pytest.fixture(scope="module")
def report(long_state: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    reader = StateClient(str(long_state), tmp_path_factory.mktemp("reader"), Identity("reader"))
    try:
        found = status(reader.snapshot())
    finally:
        reader.close()
    assert [a["id"] for a in found["agent_detail"]] == AGENTS
    assert found["tasks"]["claimed"] == 2 and found["tasks"]["pending"] == 1
    return found


SHOWN = TASKS[:2] + AGENTS  # the ids status shows: its agents and the tasks they hold


def every_id_whole(text: str, ids: list[str] = SHOWN) -> None:
    cut = [i for i in ids if i not in text]
    assert not cut, f"ids cut or missing: {cut}\n{text}"


def widths(text: str) -> list[int]:
    return [len(line) for line in ANSI.sub("", text).splitlines()]


def terminal(width_env: str, out: io.StringIO) -> Console:
    """A console that is a terminal (as a pty would be) with COLUMNS=``width_env``."""
    return Console(file=out, force_terminal=True, color_system=None,
                   _environ={"COLUMNS": width_env, "TERM": "xterm"})  # fmt: skip


# --- widths ------------------------------------------------------------------------------


def test_off_a_terminal_no_id_is_cut(report: dict[str, Any]) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=80)  # rich's width off a terminal
    print_tables(status_tables(report), console=console)
    text = out.getvalue()
    every_id_whole(text)
    assert max(widths(text)) > 80  # wider than rich's default: the table's own width
    assert "…" not in text


def test_on_a_terminal_the_tables_fit_columns_and_ids_fold(report: dict[str, Any]) -> None:
    out = io.StringIO()
    console = terminal("60", out)
    assert console.width == 60
    print_tables(status_tables(report), console=console)
    text = ANSI.sub("", out.getvalue())
    assert max(widths(text)) <= 60, text
    assert "…" not in text  # folded onto more lines, not cut with an ellipsis
    # a folded id is all there, a piece on each line of its cell
    agents = text.split("agents:", 1)[1].split("┡", 1)[1].split("└", 1)[0]
    pieces = [line.split("│")[1].strip() for line in agents.splitlines() if "│" in line]
    assert "".join(pieces) == "".join(AGENTS)


def test_wide_never_cuts_even_on_a_narrow_terminal(report: dict[str, Any]) -> None:
    out = io.StringIO()
    console = terminal("60", out)
    rows = [{"id": t, "state": "claimed", "agent": AGENTS[0]} for t in TASKS]
    print_tables([*status_tables(report), task_table(rows)], wide=True, console=console)
    text = ANSI.sub("", out.getvalue())
    every_id_whole(text, TASKS + AGENTS)
    assert max(widths(text)) > 60


def test_the_fitted_width_is_the_terminals_or_the_natural_one(report: dict[str, Any]) -> None:
    agents = status_tables(report)[1]
    pipe = Console(file=io.StringIO(), force_terminal=False, width=80)
    natural = fitted_width(pipe, agents)
    assert natural > 80 and fitted_width(pipe, "short") == 80  # never below the console's
    assert fitted_width(terminal("60", io.StringIO()), agents) == 60
    assert fitted_width(terminal("60", io.StringIO()), agents, wide=True) == natural


def test_a_long_line_off_a_terminal_is_one_line() -> None:
    out = io.StringIO()
    url = "ssh://git@" + "h" * 120 + "/srv/state.git"
    print_fitted(Console(file=out, force_terminal=False, width=80),
                 [f"state repo {url}: [green]healthy[/]"])  # fmt: skip
    assert out.getvalue() == f"state repo {url}: healthy\n"


PROBE = HostProbe(service="active", restarts=0, release="r1", disk_free=50 * 10**9,
                  disk_total=100 * 10**9, mem_total=16 * 10**9, mem_available=8 * 10**9,
                  load1=0.1, cpus=4)  # fmt: skip


def test_health_off_a_terminal_keeps_every_host_name_whole() -> None:
    names = [long_id("host", n) for n in range(2)]
    fleet = fleet_health([host_health(HostFacts(n, probe=PROBE)) for n in names], None)
    out = io.StringIO()
    print_health(Console(file=out, force_terminal=False, width=80), fleet)
    text = out.getvalue()
    assert all(n in text for n in names), text
    assert text.splitlines()[-1] == fleet.verdict  # the verdict: one line, not wrapped
    narrow = io.StringIO()
    print_health(terminal("60", narrow), fleet)
    assert max(widths(narrow.getvalue())) <= 60
    wide = io.StringIO()
    print_health(terminal("60", wide), fleet, wide=True)
    assert all(n in wide.getvalue() for n in names)


# --- the real command, its stdout a pipe ----------------------------------------------------


@pytest.mark.parametrize("columns", [None, "60"])
def test_claude_cluster_status_into_a_pipe_cuts_no_id(
    long_state: Path, tmp_path: Path, columns: str | None
) -> None:
    """COLUMNS off a terminal only sets the least width: a pipe still gets every id whole."""
    env = {"CLUSTER_WORKDIR": str(tmp_path), "PATH": os.environ["PATH"], "HOME": str(tmp_path),
           **({"COLUMNS": columns} if columns else {})}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "cluster", "status", "--state", str(long_state)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT,
                          env=env, check=False, timeout=120)  # stdout: a pipe
    assert done.returncode == 0, done.stderr
    every_id_whole(done.stdout)
    assert "\x1b[" not in done.stdout  # not a terminal: no colour codes either


def test_task_list_rows_keep_long_ids_off_a_terminal(long_state: Path, tmp_path: Path) -> None:
    reader = StateClient(str(long_state), tmp_path / "reader", Identity("reader"))
    try:
        rows = task_rows(reader.snapshot())
    finally:
        reader.close()
    out = io.StringIO()
    print_tables([task_table(rows)], console=Console(file=out, force_terminal=False, width=80))
    assert all(t in out.getvalue() for t in TASKS)
    assert AGENTS[0] in out.getvalue()  # the claimed rows name their agent


# --- progress ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_progress_is_plain_lines() -> None:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, force_terminal=False, width=40)
    with StepProgress(console, "backup", total=3, clock=clock) as steps:
        with steps.step("bundle every ref of [the] state repo"):  # markup-like text: as is
            clock.now += 1.25
        with pytest.raises(OSError, match="disk full"), steps.step("verify the bundle"):
            clock.now += 0.5
            raise OSError("disk full")
    assert out.getvalue().splitlines() == [
        "[1/3] bundle every ref of [the] state repo ... ok (1.2s)",  # one line, though > 40
        "[2/3] verify the bundle ... failed (0.5s)",
    ]


def test_rows_are_counted_once_and_timed_from_their_first_step() -> None:
    out, clock = io.StringIO(), Clock()
    with StepProgress(Console(file=out, force_terminal=False), "deploy", rows=["a", "b"],
                      clock=clock) as steps:  # fmt: skip
        clock.now += 1
        steps.show("a", "connect")
        clock.now += 2
        steps.finish("a", "changed")
        steps.finish("a", "changed")  # reported twice (hostrun, then nornir): counted once
        steps.finish("ghost", "ok")  # not in the run: ignored
        steps.show("b", "facts")
        assert steps.lines() == {"": "1/2", "a": "a: changed", "b": "b: facts"}
    assert out.getvalue() == "[1/2] a ... changed (2.0s)\n"


def test_on_a_terminal_progress_is_drawn_live_and_survives_a_failure() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    with (pytest.raises(RuntimeError, match="boom"),
          StepProgress(console, "restore", total=2) as steps):  # fmt: skip
        assert steps.live
        with steps.step("check backup-1"):
            pass
        with steps.step("rebuild the bare repo"):
            raise RuntimeError("boom")
    frames = ANSI.sub("", out.getvalue())
    assert "restore" in frames and "2/2" in frames  # the bar's last frame before it went
    assert "[1/2]" not in frames  # no plain lines on a terminal


def test_backup_and_restore_print_their_steps_off_a_terminal(
    long_state: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    settings = load_settings({"state": str(long_state), "dest": tmp_path / "b"}, environ={})
    taken = create_backup(settings, console=console)
    restored = restore(taken.path, tmp_path / "r.git", console=console)
    assert restored.refs == taken.refs
    steps = [re.sub(r" \(\d+\.\ds\)$", "", line) for line in out.getvalue().splitlines()]
    assert steps == [
        "[1/5] bundle every ref of the state repo ... ok",
        "[2/5] verify the bundle ... ok",
        "[3/5] copy the config and inventory, write the manifest ... ok",
        f"[4/5] publish {taken.path.name} ... ok",
        "[5/5] prune old backups ... ok",
        f"[1/3] check {taken.path.name} ... ok",
        f"[2/3] rebuild the bare repo ({len(taken.refs)} refs) ... ok",
        f"[3/3] move it into place at {tmp_path / 'r.git'} ... ok",
    ]
    silent = create_backup(settings)  # no console: nothing printed, as before
    assert silent.path != taken.path


def test_add_agents_wait_for_the_first_heartbeat_is_a_step(
    long_state: Path, tmp_path: Path
) -> None:
    """The wait reads the real state repo: agent 0's heartbeat is there, a newcomer's is not."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text(
        f"{AGENTS[0]}: {{hostname: 192.0.2.10, data: {{specialties: [backend]}}}}\n"
        "newcomer: {hostname: 192.0.2.11, data: {specialties: [backend]}}\n")
    (inventory / "defaults.yaml").write_text(
        f"username: deploy\ndata: {{state_repo: 'file://{long_state}'}}\n")
    settings = load_deploy_settings({"inventory": inventory, "work_dir": tmp_path / "work"},
                                    environ={})  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    seen = wait_for_heartbeat(console, settings, AGENTS[0], 10)
    assert seen == f"first heartbeat: pid 1, running, from {host_of(AGENTS[0])}"
    with pytest.raises(ClusterError, match="no heartbeat from newcomer within 1s"):
        wait_for_heartbeat(console, settings, "newcomer", 1)
    lines = [re.sub(r" \(\d+\.\ds\)$", "", line) for line in out.getvalue().splitlines()]
    assert lines == [f"[1/1] wait for {AGENTS[0]}'s first heartbeat (up to 10s) ... ok",
                     "[1/1] wait for newcomer's first heartbeat (up to 1s) ... failed"]
