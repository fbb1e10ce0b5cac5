"""One outcome from executor to record: what an executor reports reaches the result unchanged,
its verdict never does, and the record's YAML is what it always was."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import yaml

from cluster.agent.executors.base import ExecutionOutcome
from cluster.state.records import Outcome, Result, load_result
from tests.unit.test_taskrunner import Scripted, fixes, held, local_runner, task
from tests.unit.test_workspace import make_remote

# A result record as agents have always written it (before the outcome became one value).
GOLDEN = (
    b"kind: result\n"
    b"task: fix-add\n"
    b"status: failed\n"
    b"attempt: 2\n"
    b"agent: a1\n"
    b"reason: verify exited with 1\n"
    b"started_at: '2026-01-01T00:00:00.125Z'\n"
    b"finished_at: '2026-01-01T00:00:02.375Z'\n"
    b"duration_s: 2.25\n"
    b"summary: 'fixed add()\n"
    b"\n"
    b"  all tests pass'\n"
    b"branch: cluster/fix-add\n"
    b"head: abababababababababababababababababababab\n"
    b"pull_request: file:///prs/1.json\n"
    b"turns: 3\n"
    b"input_tokens: 120\n"
    b"output_tokens: 40\n"
    b"cost_usd: 0.02\n"
    b"log: /work/logs/fix-add-a2.log\n"
)


def test_an_executors_report_reaches_the_record_unchanged(tmp_path: Path) -> None:
    runner = local_runner(tmp_path, claude=Scripted(fixes))
    report = runner.run(held(task(make_remote(tmp_path), None)), threading.Event())
    assert report.status == "succeeded", report.reason
    out = report.outcome
    record = Result(task="fix-add", status="succeeded", attempt=1, agent="a1").carrying(out)
    assert type(record) is Result
    # fixes() reported these; the runner added the rest around them, copying nothing.
    assert (record.summary, record.turns, record.input_tokens, record.output_tokens,
            record.cost_usd) == ("fixed add()", 3, 120, 40, 0.02)
    assert (record.branch, record.head, record.pull_request, record.log, record.started_at,
            record.duration_s) == (out.branch, out.head, out.pull_request, out.log,
                                   out.started_at, out.duration_s)
    assert record.branch == "cluster/fix-add" and record.head and record.pull_request
    body = yaml.safe_load(record.to_yaml())
    assert not {"ok", "error", "limit"} & set(body)  # the executor's verdict stays out


def test_a_result_record_reads_as_it_always_did() -> None:
    executed = ExecutionOutcome(ok=False, error="verify failed", summary="fixed add()\n"
                                "all tests pass", turns=3, input_tokens=120, output_tokens=40,
                                cost_usd=0.02)
    completed = replace(executed, started_at=1767225600.125, finished_at=1767225602.375,
                        duration_s=2.25, branch="cluster/fix-add", head="ab" * 20,
                        pull_request="file:///prs/1.json", log="/work/logs/fix-add-a2.log")
    record = Result(task="fix-add", status="failed", attempt=2, agent="a1",
                    reason="verify exited with 1").carrying(completed)
    assert record.to_yaml() == GOLDEN
    assert load_result(GOLDEN) == record
    plain = Outcome().carrying(completed)  # an Outcome's own fields, nothing of the verdict
    assert type(plain) is Outcome and plain.summary == completed.summary
