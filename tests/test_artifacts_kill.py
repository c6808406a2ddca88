"""SIGKILL at every kind of point of every artifact writer: the old or the new artifact loads,
complete, and a killed training run resumes into exactly the uninterrupted result.

The cases run in one helper process (``tests/_artifact_scenarios.py``) that forks a child per
case; the kill points are filesystem operations and training steps, chosen with fixed seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._artifact_scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    proc = subprocess.run(
        [sys.executable, "-m", "tests._artifact_scenarios", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((root / "results.json").read_text())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_killed_write_leaves_a_complete_artifact(results, name):
    cases = results[name]
    bad = [c for c in cases if not c["ok"]]
    assert not bad, bad
    assert cases[0]["k"] == 0 and cases[0]["clean_exit"]  # the reference run, not killed
    killed = [c for c in cases[1:] if c["killed"]]
    assert len(killed) >= 3, cases
    if name not in ("trainer", "zoo_target"):
        # Early kills keep the old artifact, late ones (after the swap) already show the new.
        assert {c["state"] for c in killed} == {"old", "new"}, cases
