"""``invoke test`` runs its tiers side by side: each line said with its tier, any failure fails."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from cluster.tasks.suite import Tier, run_tiers


def tier(tmp_path: Path, name: str, body: str) -> Tier:
    folder = tmp_path / name
    folder.mkdir()
    if body:
        (folder / f"test_{name}.py").write_text(body)
    return Tier(name, (str(folder),))


def meets(mine: Path, theirs: Path) -> str:
    """A test that marks ``mine`` and passes only once ``theirs`` appears (deadline 60 s)."""
    return ("import pathlib, time\n"
            "def test_meets():\n"
            f"    pathlib.Path({str(mine)!r}).touch()\n"
            "    deadline = time.monotonic() + 60\n"
            f"    while not pathlib.Path({str(theirs)!r}).exists():\n"
            "        assert time.monotonic() < deadline, 'the other tier never ran'\n"
            "        time.sleep(0.05)\n")


def test_tiers_run_at_once_and_each_line_names_its_tier(tmp_path: Path) -> None:
    # each tier's test waits for the other's mark: both pass only if they run at the same time
    a_mark, b_mark = tmp_path / "alpha.mark", tmp_path / "beta.mark"
    a = tier(tmp_path, "alpha", meets(a_mark, b_mark))
    b = tier(tmp_path, "beta", meets(b_mark, a_mark))
    out = io.StringIO()
    assert run_tiers(sys.executable, (a, b), out=out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert all(line.startswith(("[alpha] ", "[beta] ")) for line in lines), lines
    assert any(line.startswith("[alpha] passed in ") and "1 passed" in line for line in lines)
    assert any(line.startswith("[beta] passed in ") and "1 passed" in line for line in lines)


def test_one_failing_tier_fails_the_run_and_says_which(tmp_path: Path) -> None:
    good = tier(tmp_path, "good", "def test_ok():\n    assert True\n")
    bad = tier(tmp_path, "bad", "def test_no():\n    assert 1 == 2\n")
    out = io.StringIO()
    assert run_tiers(sys.executable, (good, bad), out=out) == 1
    text = out.getvalue()
    assert "[good] passed in " in text
    assert "[bad] FAILED (exit 1)" in text and "1 failed" in text


def test_a_tier_that_collects_nothing_fails(tmp_path: Path) -> None:
    empty = tier(tmp_path, "empty", "")
    out = io.StringIO()
    assert run_tiers(sys.executable, (empty,), out=out) == 1
    assert "[empty] FAILED (exit 5) " in out.getvalue() and "no test collected" in out.getvalue()
