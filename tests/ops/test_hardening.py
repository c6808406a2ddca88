"""Regression tests for issue 13's reproducers: crashes, silent wrap/truncation, NaN out.

The crash reproducers run in a subprocess, so a crash (abort, SIGFPE, SIGSEGV) is a failed test
rather than a dead run; each must raise a clear ValueError/TypeError naming the argument.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

import dspark
from dspark import _C


def i32(*v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int32)


PRELUDE = """
import torch, dspark
from dspark import _C
def i32(*v):
    return torch.tensor(v, dtype=torch.int32)
"""

CRASHES = {
    "tree_positions_heap": (
        "dspark.tree_positions(None, i32(0, 100000, 2), torch.tensor([10, 10]))",
        "qo_indptr",
    ),
    "verify_attention_page_size_int32": (
        """
k = torch.zeros(1, 1, 1, 64).expand(1, 2**32, 1, 64)
q = torch.zeros(1, 1, 64)
dspark.verify_attention(q, k, k, i32(0, 1), i32(0).view(1, 1), i32(1))
""",
        "k_cache",
    ),
    "check_indices_page_size_zero": (
        "_C.check_verify_attention_indices(i32(0, 1), i32(0).view(1, 1), i32(1), None, 1, 1, 0)",
        "page_size",
    ),
    "draft_step_confidence_without_hidden": (
        """
R, G, V, r = 1, 2, 8, 4
f = torch.zeros
_C.draft_step(f(R, G, V), f(V, r), f(V, r), torch.zeros(R, dtype=torch.int64), None,
              torch.zeros(R, dtype=torch.int64), torch.zeros(R, dtype=torch.int64), None, None,
              0.0, 0, torch.zeros(R, G, dtype=torch.int32), f(R, G, V), f(R, G),
              torch.zeros(R, dtype=torch.int64))
""",
        "confidence",
    ),
}


@pytest.mark.parametrize("name", list(CRASHES))
def test_crash_reproducer_raises_clear_error(name):
    code, arg = CRASHES[name]
    script = PRELUDE + textwrap.dedent(
        f"""
try:
{textwrap.indent(textwrap.dedent(code).strip(), "    ")}
except (ValueError, TypeError) as e:
    print("RAISED", type(e).__name__, e)
else:
    print("NO ERROR")
"""
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("RAISED"), proc.stdout
    assert arg in proc.stdout, proc.stdout


def _verify(**kw):
    V = 8
    base = {
        "target": torch.randn(5 + 2, V),
        "draft_tokens": torch.tensor([1, 2, 3, 4, 5]),
        "draft_indptr": torch.tensor([0, 2, 5]),
        "temperature": 1.0,
        "seed": 0,
    }
    base.update(kw)
    return dspark.verify_batch(
        base.pop("target"), base.pop("draft_tokens"), base.pop("draft_indptr"), **base
    )


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"draft_indptr": torch.tensor([0, 2, 5 + 2**32])}, ValueError, "draft_indptr"),
        ({"parents": torch.tensor([-1, 0, -1, 0, 2**32 - 1])}, ValueError, "parents"),
        ({"top_k": 2**32 + 1}, ValueError, "top_k"),
        ({"top_k": torch.tensor([1, 2**33])}, ValueError, "top_k"),
        ({"max_emit": 2**32}, ValueError, "max_emit"),
        ({"top_k": 2.5}, TypeError, "top_k"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"max_depth": 2**40}, ValueError, "max_depth"),
        ({"max_depth": 2.5}, TypeError, "max_depth"),
    ],
)
def test_verify_batch_int_width(kw, exc, match):
    with pytest.raises(exc, match=match):
        _verify(**kw)


def test_verify_batch_min_p_one_and_integral_float_accepted():
    res = _verify(min_p=1.0, top_k=2.0)
    assert res.accept_len.shape == (2,)


def test_raw_verify_batch_max_depth_out_of_range():
    a = dict(accept_len=i32(0), num_emitted=i32(0), final_token=i32(0), last_row=i32(0))
    with pytest.raises(ValueError, match="max_depth"):
        _C.verify_batch(
            torch.zeros(1, 4),
            i32(),
            i32(0, 0),
            None,
            None,
            0,
            0,
            None,
            None,
            None,
            None,
            torch.zeros(1, dtype=torch.int64),
            torch.zeros(1, dtype=torch.int64),
            None,
            False,
            2**40,
            a["accept_len"],
            a["num_emitted"],
            torch.zeros(1, 1, dtype=torch.int32),
            a["final_token"],
            torch.zeros(1, dtype=torch.bool),
            torch.zeros(1, 0, dtype=torch.int32),
            a["last_row"],
            torch.zeros(1, dtype=torch.int64),
            None,
        )


def _attention(**kw):
    k = torch.randn(2, 4, 1, 64)
    base = {
        "q": torch.randn(2, 1, 64),
        "k_cache": k,
        "v_cache": k.clone(),
        "qo_indptr": i32(0, 2),
        "block_table": i32(0, 1).view(1, 2),
        "kv_len": i32(6),
    }
    base.update(kw)
    return dspark.verify_attention(**base)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"sm_scale": math.nan}, "sm_scale"),
        ({"sm_scale": math.inf}, "sm_scale"),
        ({"logits_soft_cap": math.inf}, "logits_soft_cap"),
        ({"logits_soft_cap": math.nan}, "logits_soft_cap"),
    ],
)
def test_verify_attention_rejects_non_finite_scalars(kw, match):
    with pytest.raises(ValueError, match=match):
        _attention(**kw)


def _draft(**kw):
    R, G, V, r = 2, 3, 16, 4
    base = {
        "base_logits": torch.randn(R, G, V),
        "w1": torch.randn(V, r),
        "w2": torch.randn(V, r),
        "anchors": torch.tensor([1, 2]),
        "temperature": 1.0,
        "seed": 0,
    }
    base.update(kw)
    return dspark.draft_step(**base)


def test_draft_step_rejects_nan_conf_bias():
    with pytest.raises(ValueError, match="conf_bias"):
        _draft(hidden=torch.randn(2, 3, 5), conf_weight=torch.randn(9), conf_bias=math.nan)


def _raw_draft(anchors, temperature):
    R, G, V, r = 2, 3, 16, 4
    _C.draft_step(
        torch.randn(R, G, V),
        torch.randn(V, r),
        torch.randn(V, r),
        anchors,
        temperature,
        torch.zeros(R, dtype=torch.int64),
        torch.zeros(R, dtype=torch.int64),
        None,
        None,
        0.0,
        0,
        torch.empty(R, G, dtype=torch.int32),
        torch.empty(R, G, V),
        None,
        torch.empty(R, dtype=torch.int64),
    )


@pytest.mark.parametrize("anchors", [[-1, 0], [0, 16]])
def test_raw_draft_step_rejects_out_of_range_anchors(anchors):
    with pytest.raises(ValueError, match="anchors"):
        _raw_draft(torch.tensor(anchors), None)


@pytest.mark.parametrize("t", [-1.0, math.nan, math.inf])
def test_raw_draft_step_rejects_bad_temperature(t):
    with pytest.raises(ValueError, match="temperature"):
        _raw_draft(torch.tensor([0, 1]), torch.tensor([1.0, t]))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((None, i32(0, 3, 2), i32(5, 5)), "qo_indptr"),  # non-monotone
        ((None, i32(1, 3), i32(5)), "qo_indptr"),  # does not start at 0
        ((None, i32(0, 3), i32(5, 5)), "kv_len"),  # short indptr / wrong kv_len length
        ((None, i32(0, 3), i32(2)), "kv_len"),  # kv_len < qo_len
        ((None, torch.tensor([0.0, 1.5]), i32(5)), "qo_indptr"),  # fractional
        ((i32(-1, 0), i32(0, 3), i32(5)), "parents"),  # short parents
    ],
)
def test_tree_positions_validates(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dspark.tree_positions(*args)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((None, i32(0, 3, 2)), "draft_indptr"),
        ((None, i32(2, 3)), "draft_indptr"),
        ((i32(-1, 0), i32(0, 3)), "parents"),
        ((None, torch.tensor([0.0, 2.5])), "draft_indptr"),
    ],
)
def test_tree_query_layout_validates(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dspark.tree_query_layout(*args)


def test_tree_from_choices_rejects_fractional_ranks():
    with pytest.raises(TypeError, match="choices"):
        dspark.tree_from_choices([(0.7,)])


@pytest.mark.parametrize("preallocated", [False, True])
def test_verify_batch_zero_width_outputs(preallocated):
    # No drafts and max_depth=0: (R, 0) paths and (R, 1) tokens, no caller workaround needed.
    R, V = 3, 8
    target = torch.randn(R, V)
    out = dspark.VerifyResult.empty(R, 0, target.device) if preallocated else None
    res = dspark.verify_batch(
        target,
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(R + 1, dtype=torch.int32),
        max_depth=0,
        out=out,
    )
    assert res.path.shape == (R, 0) and res.tokens.shape == (R, 1)
    assert res.tokens[:, 0].tolist() == target.argmax(-1).tolist()
    assert res.num_emitted.tolist() == [1] * R
