"""Invariant 6: every kind of bad input ends in exactly one `invalid` result with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.state.checker import check
from cluster.state.ids import key_for_name
from cluster.state.schema import MAX_TASK_BYTES
from tests.clients import state_client
from tests.helpers import commit_files, make_state, poll, task_doc

BAD: dict[str, tuple[bytes, str]] = {
    "yaml-error.yaml": (b"id: yaml-error\ntitle: x: y\n", "YAML error at line 2"),
    "unknown-field.yaml": (
        yaml.safe_dump({**task_doc("unknown-field"), "colour": "red"}).encode(),
        "field 'colour': unknown field",
    ),
    "unknown-specialty.yaml": (
        yaml.safe_dump(task_doc("unknown-specialty", specialty="astrology")).encode(),
        "unknown specialty 'astrology'",
    ),
    "unsafe-id.yaml": (
        yaml.safe_dump({**task_doc("x"), "id": "../x"}).encode(), "unsafe id '../x'"),
    "Unsafe Name.yaml": (yaml.safe_dump(task_doc("y")).encode(), "unsafe file name"),
    "oversized.yaml": (b"#" * (MAX_TASK_BYTES + 10), "more than 65536"),
    "not-utf8.yaml": (b"id: not-utf8\ntitle: \xff\xfe\n", "not UTF-8"),
    "a-list.yaml": (b"- 1\n- 2\n", "found list"),
    "bad-deps.yaml": (
        yaml.safe_dump(task_doc("bad-deps", depends_on=["nobody"])).encode(),
        "depends_on names unknown task 'nobody'",
    ),
}


def test_each_bad_input_gets_exactly_one_invalid_result(tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    files: dict[str, bytes | str | None] = {f"tasks/{n}": d for n, (d, _) in BAD.items()}
    files["tasks/good.yaml"] = yaml.safe_dump(task_doc("good"))
    files["tasks/a-directory/inner.yaml"] = b"id: inner\n"
    commit_files(repo, files, tmp_path / "person")
    procs = [agents(repo, f"a{n}", exit_when_idle=True, lease=5, heartbeat=0.5)
             for n in range(3)]
    for proc in procs:
        assert proc.wait(120) == 0, proc.tail()
    client = state_client(repo, tmp_path)
    snap = client.snapshot()
    report = check(repo)
    for name, (_, reason) in BAD.items():
        key = key_for_name(name)
        result = snap.result(key)
        assert result is not None, f"{name}: no result"
        assert result.status == "invalid", name
        assert reason in result.reason, (name, result.reason)
        assert report.tasks[key] == ("done", "invalid"), name
    directory = snap.result(key_for_name("a-directory"))
    assert directory is not None and "a directory, not a task file" in directory.reason
    good = snap.result("good")
    assert good is not None and good.status == "succeeded"
    assert report.summary()["duplicated"] == 0
    judged = [e for p in procs for e in p.events() if e["event"] == "judged"]
    assert len(judged) == len(BAD) + 1  # once each, whoever got there first
    client.close()


def test_failed_dependency_cancels_and_success_unblocks(tmp_path: Path, agents: Any) -> None:
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2, "retry_backoff_seconds": 0.1})
    docs = [
        task_doc("base-fails", command="exit 3", max_attempts=2),
        task_doc("after-failure", depends_on=["base-fails"]),
        task_doc("base-ok", command="sleep 0.5"),
        task_doc("after-ok", command="test -n ok", depends_on=["base-ok"]),
    ]
    commit_files(repo, {f"tasks/{d['id']}.yaml": yaml.safe_dump(d) for d in docs},
                 tmp_path / "person")
    proc = agents(repo, "solo", exit_when_idle=True, lease=5, heartbeat=0.5, max_tasks=2)
    assert proc.wait(120) == 0, proc.tail()
    client = state_client(repo, tmp_path)
    snap = client.snapshot()
    statuses = {d["id"]: snap.result(d["id"]) for d in docs}
    assert statuses["base-fails"] is not None and statuses["base-fails"].status == "failed"
    assert statuses["base-fails"].attempt == 2 and "exited with 3" in statuses["base-fails"].reason
    cancelled = statuses["after-failure"]
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.reason == "dependency 'base-fails' ended failed"
    ok = statuses["after-ok"]
    base = statuses["base-ok"]
    assert ok is not None and ok.status == "succeeded" and base is not None
    assert ok.started_at is not None and base.finished_at is not None
    assert ok.started_at >= base.finished_at
    client.close()


def test_hostile_task_files_do_not_stop_the_agent(tmp_path: Path, agents: Any) -> None:
    """A 5,000-digit integer and a duplicate key: one `invalid` each, the agent keeps going."""
    repo = make_state(tmp_path, {"fold_delay_seconds": 0.2})
    hostile = {
        "huge-int.yaml": (yaml.safe_dump(task_doc("huge-int")).encode()
                          + b"issue: " + b"9" * 5000 + b"\n", "cannot read this int"),
        "dup-key.yaml": (yaml.safe_dump(task_doc("dup-key")).encode() + b"repo: evil/web\n",
                         "duplicate key 'repo'"),
    }
    files: dict[str, bytes | str | None] = {f"tasks/{n}": d for n, (d, _) in hostile.items()}
    files["tasks/good.yaml"] = yaml.safe_dump(task_doc("good"))
    commit_files(repo, files, tmp_path / "person")
    proc = agents(repo, "solo", lease=5, heartbeat=0.5)
    client = state_client(repo, tmp_path)

    def finished() -> bool:
        snap = client.snapshot()
        return all(snap.result(k) is not None for k in ("huge-int", "dup-key", "good"))

    poll(finished, 120, lambda: proc.tail())
    assert proc.proc.poll() is None, proc.tail()  # still running: nothing crashed it
    snap = client.snapshot()
    for name, (_, reason) in hostile.items():
        result = snap.result(key_for_name(name))
        assert result is not None and result.status == "invalid", name
        assert result.reason.startswith(f"tasks/{name}: ") and reason in result.reason
    good = snap.result("good")
    assert good is not None and good.status == "succeeded"
    judged = [e for e in proc.events() if e["event"] == "judged"]
    assert sorted(e.get("task") for e in judged) == ["dup-key", "huge-int"], judged
    report = check(repo)
    assert report.tasks["huge-int"] == ("done", "invalid")
    assert report.tasks["dup-key"] == ("done", "invalid")
    client.close()
