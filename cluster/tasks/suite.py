"""The whole test suite as independent tiers run side by side, each line said with its tier.

The unit tier (real git, agents as processes, the loopback stand-ins) and the host tier (test
hosts in docker: integration and chaos, which share the hosts and so run in one process) need
nothing of each other, so ``invoke test`` starts both at once: the host tier spends most of its
time waiting for containers and systemd, time the unit tier uses. Each tier gets its own
``--basetemp``; the run fails if any tier fails or collects no test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

NO_TESTS = 5  # pytest's exit code when nothing was collected


@dataclass(frozen=True)
class Tier:
    name: str
    paths: tuple[str, ...]


TIERS = (Tier("unit", ("tests/unit",)), Tier("hosts", ("tests/integration", "tests/chaos")))


@dataclass
class Ended:
    tier: Tier
    code: int
    seconds: float
    last: str  # pytest's summary line


def run_tiers(python: str, tiers: Sequence[Tier] = TIERS, extra: Sequence[str] = (),
              out: IO[str] = sys.stdout) -> int:
    """Run every tier at once; 0 only when each passed. Prints a line per tier at the end."""
    base = Path(tempfile.mkdtemp(prefix="cct."))
    lock = threading.Lock()
    ended: list[Ended] = []
    threads = [threading.Thread(target=lambda t=tier: ended.append(
        _run(python, t, base / t.name, extra, out, lock)), name=f"tier-{tier.name}")
        for tier in tiers]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shutil.rmtree(base, ignore_errors=True)
    for end in sorted(ended, key=lambda e: e.tier.name):
        verdict = "passed" if end.code == 0 else f"FAILED (exit {end.code})"
        out.write(f"[{end.tier.name}] {verdict} in {end.seconds:.0f} s: {end.last}\n")
    out.flush()
    return 0 if len(ended) == len(tiers) and all(e.code == 0 for e in ended) else 1


def _run(python: str, tier: Tier, basetemp: Path, extra: Sequence[str], out: IO[str],
         lock: threading.Lock) -> Ended:
    # pytest's default verbosity: a line per test file as it ends (-q would hold a tier's dots
    # until a line of them is full, so a slow tier would say nothing for many minutes)
    args = [python, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
            *extra, *tier.paths]
    started = time.monotonic()
    last = ""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, stdin=subprocess.DEVNULL) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                last = line.strip()
            with lock:
                out.write(f"[{tier.name}] {line}")
                out.flush()
        code = proc.wait()
    if code == NO_TESTS:
        last = f"no test collected in {', '.join(tier.paths)}"
    return Ended(tier, code, time.monotonic() - started, last)
