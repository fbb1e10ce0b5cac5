"""The examples in state/ are parsed by the code the agents run, so they stay true."""

from __future__ import annotations

from pathlib import Path

from cluster.state.records import (
    Claim,
    Heartbeat,
    Release,
    Result,
    load_claim_record,
    load_heartbeat,
)
from cluster.state.schema import parse_task
from cluster.state.settings import parse_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "state"


def test_settings_example() -> None:
    settings = parse_settings((EXAMPLES / "cluster.yaml").read_bytes())
    assert {"ml", "mobile", "backend"} <= settings.known_specialties


def test_task_examples() -> None:
    known = parse_settings((EXAMPLES / "cluster.yaml").read_bytes()).known_specialties
    for path in sorted((EXAMPLES / "tasks").glob("*.yaml")):
        spec = parse_task(f"tasks/{path.name}", path.read_bytes(), known)
        assert spec.id == path.stem


def test_record_examples_round_trip() -> None:
    for name, kind in (("claim.yaml", Claim), ("release.yaml", Release),
                       ("result.yaml", Result)):
        record = load_claim_record(name, (EXAMPLES / "records" / name).read_bytes())
        assert isinstance(record, kind)
        assert load_claim_record(name, record.to_yaml()) == record
    beat = load_heartbeat((EXAMPLES / "records" / "agent.yaml").read_bytes())
    assert isinstance(beat, Heartbeat) and beat.holding == ("fix-login-redirect",)
    assert load_heartbeat(beat.to_yaml()) == beat
