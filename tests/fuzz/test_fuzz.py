"""Fuzz suite: every public op, converter, scheduler and raw `_C` entry point, one argument
mutated at a time (wrong dtype, shape, int width, out of range, negative, NaN/inf,
non-contiguous, zero-size, ...). Each case must raise a ValueError/TypeError naming the argument,
or return a valid result (equal to the unmutated call's when the mutation keeps the values).

The cases run in a worker subprocess (``tests/fuzz/worker.py``) so a crash fails the test and
names the case it was running; the worker is then restarted after that case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.specs import SPECS
from tests.fuzz.specs_raw import RAW_SPECS

ROOT = Path(__file__).resolve().parents[2]


def _run_worker(op: str, start: int) -> tuple[list[dict], dict | None, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.worker", op, "--start", str(start)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results, running = [], None
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if "start" in msg:
            running = msg["start"]
        elif "case" in msg:
            results.append(msg)
            running = None
    return results, running, proc.returncode, proc.stderr[-1500:]


@pytest.mark.parametrize("op", [*SPECS, *RAW_SPECS])
def test_fuzz(op):
    failures, start = [], 0
    while True:
        results, running, rc, stderr = _run_worker(op, start)
        failures += [f"{r['case']}: {r['detail']}" for r in results if r["status"] == "fail"]
        if rc == 0:
            break
        if running is None:
            pytest.fail(f"worker for {op} failed outside a case (rc {rc}): {stderr}")
        failures.append(f"{running}: CRASH (rc {rc}) {stderr[-300:]}")
        if running["index"] < 0:
            break  # a crash in the property-based phase: reported, not resumed
        start = running["index"] + 1
    assert not failures, f"{len(failures)} fuzz failures for {op}:\n" + "\n".join(failures)
