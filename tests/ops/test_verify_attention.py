"""dspark.verify_attention against the dense-mask PyTorch reference (tests/reference)."""

from __future__ import annotations

import functools
import operator
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dspark
from tests.ops.verify_attention_cases import CASES, AttnCase, make_inputs
from tests.reference.verify_attention import (
    dense_verify_mask,
    verify_attention_ref,
    verify_attention_sdpa,
)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def assert_close_to_ref(out, lse, inp, **kw):
    """FlashAttention's rule: error vs the fp32 reference <= 2x the low-precision reference's."""
    ref, ref_lse = verify_attention_ref(**inp, **kw)
    ref_lp, _ = verify_attention_ref(**inp, **kw, upcast=False)
    err = (out.float() - ref.float()).abs().max().item() if out.numel() else 0.0
    base = (ref_lp.float() - ref.float()).abs().max().item() if out.numel() else 0.0
    assert err <= 2 * base + 1e-5, f"max error {err:.3g} vs low-precision reference {base:.3g}"
    if lse is not None:
        torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_verify_attention_matches_reference(case: AttnCase, dtype):
    case = AttnCase(**{**case.__dict__, "dtype": dtype})
    inp = make_inputs(case)
    out, lse = dspark.verify_attention(**inp, return_lse=True)
    assert out.dtype == dtype
    assert out.shape == inp["q"].shape
    assert lse.dtype == torch.float32
    assert_close_to_ref(out, lse, inp)


@pytest.mark.parametrize("ratio", [1, 4, 8])
@pytest.mark.parametrize("page_size", [1, 16, 64])
def test_verify_attention_gqa_and_page_sizes(ratio, page_size):
    case = AttnCase(
        (4, 9, 1),
        (37, 0, 130),
        heads=8,
        kv_heads=8 // ratio,
        head_dim=64,
        page_size=page_size,
        dtype=torch.bfloat16,
    )
    inp = make_inputs(case, seed=ratio * 100 + page_size)
    out, lse = dspark.verify_attention(**inp, return_lse=True)
    assert_close_to_ref(out, lse, inp)


@pytest.mark.parametrize(("cap", "window"), [(30.0, -1), (None, 0), (None, 5), (2.0, 40)])
def test_verify_attention_soft_cap_and_window(cap, window):
    inp = make_inputs(AttnCase((6, 3, 11), (50, 4, 70), head_dim=128), seed=3)
    inp["q"] = inp["q"] * 4  # large logits so the cap matters
    out, lse = dspark.verify_attention(
        **inp, return_lse=True, logits_soft_cap=cap, window_left=window
    )
    assert_close_to_ref(out, lse, inp, logits_soft_cap=cap, window_left=window)


def test_verify_attention_sm_scale():
    inp = make_inputs(AttnCase((5, 2), (20, 9)), seed=4)
    out = dspark.verify_attention(**inp, sm_scale=0.3)
    assert_close_to_ref(out, None, inp, sm_scale=0.3)


def test_verify_attention_chain_parents_equal_causal():
    inp = make_inputs(AttnCase((5, 0, 12), (20, 3, 33), parents="chain"), seed=5)
    a = dspark.verify_attention(**inp)
    b = dspark.verify_attention(**{**inp, "parents": None})
    assert torch.equal(a, b)


def test_verify_attention_matches_sdpa_dense_mask():
    """A second, independent reference: SDPA with the dense mask on unpaged K/V."""
    case = AttnCase((6, 6), (25, 40), heads=8, kv_heads=2, head_dim=64)
    inp = make_inputs(case, seed=6)
    out = dspark.verify_attention(**inp)
    par = inp["parents"].tolist()
    for r, (n, pre) in enumerate(zip(case.qo_lens, case.prefix_lens, strict=True)):
        L, q0 = n + pre, sum(case.qo_lens[:r])
        slots = torch.arange(L)
        pages = inp["block_table"][r, slots // case.page_size].long()
        k = inp["k_cache"][pages, slots % case.page_size].transpose(0, 1)[None]  # [1, Hk, L, D]
        v = inp["v_cache"][pages, slots % case.page_size].transpose(0, 1)[None]
        mask = dense_verify_mask(par[q0 : q0 + n], n, L)[None, None]
        ref = verify_attention_sdpa(inp["q"][q0 : q0 + n].transpose(0, 1)[None], k, v, mask)
        torch.testing.assert_close(out[q0 : q0 + n], ref[0].transpose(0, 1), atol=2e-5, rtol=1e-5)


def test_verify_attention_batch_invariant():
    """A request's output does not depend on the other requests in the batch (bitwise)."""
    case = AttnCase((3, 7, 2), (10, 60, 33))
    inp = make_inputs(case, seed=7)
    full = dspark.verify_attention(**inp)
    r, q0, n = 1, 3, 7
    solo = {
        **inp,
        "q": inp["q"][q0 : q0 + n],
        "qo_indptr": torch.tensor([0, n], dtype=torch.int32),
        "block_table": inp["block_table"][r : r + 1],
        "kv_len": inp["kv_len"][r : r + 1],
        "parents": inp["parents"][q0 : q0 + n],
    }
    assert torch.equal(dspark.verify_attention(**solo), full[q0 : q0 + n])


def test_verify_attention_out_and_empty():
    inp = make_inputs(AttnCase((0, 0), (5, 0)), seed=8)
    assert dspark.verify_attention(**inp).shape == (0, 8, 64)
    inp = make_inputs(AttnCase((2,), (3,)), seed=8)
    out = torch.empty_like(inp["q"])
    assert dspark.verify_attention(**inp, out=out) is out
    assert_close_to_ref(out, None, inp)


def test_verify_attention_kv_view_strides():
    """Non-contiguous caches (e.g. K and V as views of one [pages, 2, ps, Hk, D] buffer) work."""
    inp = make_inputs(AttnCase((4, 2), (30, 12)), seed=9)
    kv = torch.stack([inp["k_cache"], inp["v_cache"]], dim=1)
    out = dspark.verify_attention(**{**inp, "k_cache": kv[:, 0], "v_cache": kv[:, 1]})
    assert torch.equal(out, dspark.verify_attention(**inp))


def test_verify_attention_generic_isa_matches_reference():
    """The baseline (non-AVX2) build of the CPU kernel, forced in a subprocess, is also correct."""
    code = (
        "import torch, dspark\n"
        "from tests.ops.test_verify_attention import assert_close_to_ref\n"
        "from tests.ops.verify_attention_cases import CASES, AttnCase, make_inputs\n"
        "for c in (CASES[0], CASES[3], CASES[4]):\n"
        "    for dt in (torch.float32, torch.bfloat16):\n"
        "        inp = make_inputs(AttnCase(**{**c.__dict__, 'dtype': dt}))\n"
        "        out, lse = dspark.verify_attention(**inp, return_lse=True)\n"
        "        assert_close_to_ref(out, lse, inp)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DSPARK_CPU_ISA": "generic", "PYTHONPATH": str(root)}
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_tree_helpers_match_reference():
    g = torch.Generator().manual_seed(10)
    from tests.ops.verify_attention_cases import random_parents

    lens, kv = [5, 0, 9], [12, 3, 9]
    par = functools.reduce(operator.iadd, (random_parents(n, g) for n in lens), [])
    parents = torch.tensor(par, dtype=torch.int32)
    ip = torch.tensor([0, 5, 5, 14], dtype=torch.int32)
    dense = dspark.tree_attention_mask(parents, qo_indptr=ip, layout="dense")
    pos = dspark.tree_positions(parents, ip, torch.tensor(kv))
    for r, (q0, n) in enumerate([(0, 5), (5, 0), (5, 9)]):
        ref = dense_verify_mask(par[q0 : q0 + n], n, kv[r])[:, kv[r] - n :]
        assert torch.equal(dense[q0 : q0 + n, :n], ref)
        for i in range(n):
            d, a = 0, i
            while par[q0 + a] >= 0:
                a, d = par[q0 + a], d + 1
            assert int(pos[q0 + i]) == kv[r] - n + d
    assert dspark.tree_positions(None, ip, torch.tensor(kv)).tolist() == [
        7,
        8,
        9,
        10,
        11,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
    ]


def test_tree_query_layout_matches_verify_batch_mask():
    """verify_batch's node layout converts to the query layout with the same ancestor masks."""
    parents = torch.tensor([-1, -1, 0, 2, -1, 0], dtype=torch.int32)
    draft_indptr = torch.tensor([0, 4, 4, 6], dtype=torch.int32)
    qp, ip = dspark.tree_query_layout(parents, draft_indptr)
    assert ip.tolist() == [0, 5, 6, 9]
    assert qp.tolist() == [-1, 0, 0, 1, 3, -1, -1, 0, 1]
    a = dspark.tree_attention_mask(parents, draft_indptr)
    b = dspark.tree_attention_mask(qp, qo_indptr=ip)
    assert torch.equal(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("kernel", ["simt", "mma"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_verify_attention_cuda_matches_cpu(case: AttnCase, dtype, kernel):
    if kernel == "mma" and (dtype == torch.float32 or not dspark.backends()["cutlass"]):
        pytest.skip("the tensor-core kernel needs bf16/f16 and a CUTLASS build")
    case = AttnCase(**{**case.__dict__, "dtype": dtype})
    cpu = make_inputs(case)
    gpu = make_inputs(case, device="cuda")
    _, l_cpu = dspark.verify_attention(**cpu, return_lse=True)
    o_gpu, l_gpu = dspark.verify_attention(**gpu, return_lse=True, cuda_kernel=kernel)
    assert_close_to_ref(o_gpu.cpu(), l_gpu.cpu(), cpu)
    torch.testing.assert_close(l_gpu.cpu(), l_cpu, atol=1e-3, rtol=1e-4)


@pytest.mark.cuda
def test_verify_attention_cuda_split_kv_long_prefix():
    """One request with a long prefix forces several KV splits and the combine step."""
    case = AttnCase((5,), (6000,), heads=8, kv_heads=2, head_dim=128, dtype=torch.bfloat16)
    cpu = make_inputs(case, seed=11)
    gpu = make_inputs(case, seed=11, device="cuda")
    for kernel in ("simt", "mma") if dspark.backends()["cutlass"] else ("simt",):
        o, lse = dspark.verify_attention(**gpu, return_lse=True, cuda_kernel=kernel)
        assert_close_to_ref(o.cpu(), lse.cpu(), cpu)
