"""The committed type stub python/dspark/_C.pyi matches the built extension."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_native_stub_is_fresh():
    pytest.importorskip("pybind11_stubgen", reason="pybind11-stubgen is in requirements-dev.txt")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "generate_stub.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
