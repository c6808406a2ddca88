"""Fuzz worker: ``python -m tests.fuzz.worker OP [--start K] [--examples N]``.

Runs, for one spec of ``tests.fuzz.specs``, every (argument, mutation) pair on the base call (in a
fixed order, from index ``K``), then ``N`` property-based cases (hypothesis: random base sizes,
arguments and mutations). Before each call it prints ``{"start": case}`` and after it
``{"case": case, "status": ..., "detail": ...}``, one JSON object per line, flushed, so the parent
can name the case a crash interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.mutations import ALL, PRESERVING, SKIP
from tests.fuzz.specs import SPECS, Spec
from tests.fuzz.specs_raw import RAW_SPECS

TYPE_LEVEL = {"none", "list", "s_none", "s_str", "s_fraction", "s_int64_overflow"}
TYPE_LEVEL |= {"s_nan", "s_inf", "s_-inf", "drop_dim", "l_flat"}  # floats for ints, 0-dim


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run_case(spec: Spec, arg: str, mutation: str, size: int) -> tuple[str, str]:
    """Returns (status, detail): status is "ok", "skip" or "fail"."""
    kw = spec.base(torch.Generator().manual_seed(1000 + size), size)
    new = ALL[mutation](kw[arg])
    if new is SKIP:
        return "skip", ""
    kw[arg] = new
    try:
        res = spec.call(kw)
    except (ValueError, TypeError) as e:
        msg = str(e)
        names = (arg, *spec.args[arg])
        if spec.raw and mutation in TYPE_LEVEL and "incompatible function arguments" in msg:
            return "ok", "pybind11 TypeError (wrong Python type)"
        if "incompatible function arguments" in msg or not any(n in msg for n in names):
            return "fail", f"unclear {type(e).__name__}: {msg[:300]}"
        return "ok", f"{type(e).__name__}: {msg[:120]}"
    except Exception as e:
        return "fail", f"{type(e).__name__}: {str(e)[:300]}"
    try:
        spec.check(kw, res)
    except AssertionError:
        return "fail", "invalid result: " + traceback.format_exc(limit=2)[-400:]
    if mutation in PRESERVING:
        base = spec.call(spec.base(torch.Generator().manual_seed(1000 + size), size))
        if not spec.compare(base, res):
            return "fail", "a value-preserving mutation changed the result"
    return "ok", "accepted"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("op")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--examples", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(1)
    spec = {**SPECS, **RAW_SPECS}[a.op]
    grid = [(arg, m) for arg in spec.args for m in ALL]
    for i in range(a.start, len(grid)):
        arg, m = grid[i]
        case = {"index": i, "arg": arg, "mutation": m, "size": 0}
        _emit({"start": case})
        status, detail = run_case(spec, arg, m, 0)
        _emit({"case": case, "status": status, "detail": detail})

    @settings(
        max_examples=a.examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        size=st.integers(0, 5),
        arg=st.sampled_from(sorted(spec.args)),
        mutation=st.sampled_from(sorted(ALL)),
    )
    def prop(size: int, arg: str, mutation: str) -> None:
        case = {"index": -1, "arg": arg, "mutation": mutation, "size": size}
        _emit({"start": case})
        status, detail = run_case(spec, arg, mutation, size)
        _emit({"case": case, "status": status, "detail": detail})

    prop()
    _emit({"done": True})


if __name__ == "__main__":
    main()
