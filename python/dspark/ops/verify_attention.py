"""Verification attention: chains, trees and decode over a paged KV cache, one varlen call.

The layout is FlashInfer/vLLM's ragged one (``qo_indptr``) over a paged cache (``block_table``);
the mask is the compact ancestor rule of ``docs/verify_batch.md`` section 5, evaluated in
the kernel from ``parents``, so no dense ``[q, kv]`` mask is ever built.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch

from dspark import _C
from dspark._backend import require_cuda
from dspark._checks import as_float, as_int, check_tensor, cuda_stream

__all__ = ["verify_attention"]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
_CUDA_KERNELS = {"auto": 0, "simt": 1, "mma": 2}


@overload
def verify_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    qo_indptr: torch.Tensor,
    block_table: torch.Tensor,
    kv_len: torch.Tensor,
    *,
    parents: torch.Tensor | None = ...,
    sm_scale: float | None = ...,
    logits_soft_cap: float | None = ...,
    window_left: int = ...,
    return_lse: Literal[False] = ...,
    max_qo_len: int | None = ...,
    max_kv_len: int | None = ...,
    validate: bool = ...,
    out: torch.Tensor | None = ...,
    cuda_kernel: str = ...,
) -> torch.Tensor: ...
@overload
def verify_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    qo_indptr: torch.Tensor,
    block_table: torch.Tensor,
    kv_len: torch.Tensor,
    *,
    parents: torch.Tensor | None = ...,
    sm_scale: float | None = ...,
    logits_soft_cap: float | None = ...,
    window_left: int = ...,
    return_lse: Literal[True],
    max_qo_len: int | None = ...,
    max_kv_len: int | None = ...,
    validate: bool = ...,
    out: torch.Tensor | None = ...,
    cuda_kernel: str = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...


def verify_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    qo_indptr: torch.Tensor,
    block_table: torch.Tensor,
    kv_len: torch.Tensor,
    *,
    parents: torch.Tensor | None = None,
    sm_scale: float | None = None,
    logits_soft_cap: float | None = None,
    window_left: int = -1,
    return_lse: bool = False,
    max_qo_len: int | None = None,
    max_kv_len: int | None = None,
    validate: bool = True,
    out: torch.Tensor | None = None,
    cuda_kernel: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention of verification queries (chains, trees, decode) over a paged KV cache.

    Request ``r`` owns queries ``q[qo_indptr[r]:qo_indptr[r+1]]`` (``qo_len[r]`` of them) and the
    first ``kv_len[r]`` slots of its pages ``block_table[r]``. The caller has already appended
    the queries' own K/V, so the last ``qo_len[r]`` of those slots are the queries, in order, and
    the ``prefix_len = kv_len - qo_len`` slots before them are the prefix. Query ``i`` sees the
    whole prefix, itself and its ancestors (``parents``); with ``parents=None`` it is causal.

    Parameters
    ----------
    q : Tensor (T, H, D) float32 | bfloat16 | float16
        Queries of all requests, flattened; D in {64, 128, 256}.
    k_cache, v_cache : Tensor (num_pages, page_size, Hk, D), dtype of ``q``
        Paged cache; H must be a multiple of Hk (GQA/MQA). Any strides with D contiguous.
    qo_indptr : Tensor (R + 1,) int32
        ``qo_indptr[0] = 0``, non-decreasing, ``qo_indptr[R] = T``; requests may have 0 queries.
    block_table : Tensor (R, max_pages) int32
        Page ids of each request's slots (slot s is at page ``block_table[r, s // page_size]``).
    kv_len : Tensor (R,) int32
        Cached slots per request, including its own queries.
    parents : Tensor (T,) int32, optional
        Local parent per query (``-1 <= parents[t] < i`` for the i-th query of its request; -1 =
        sees only the prefix and itself). The anchor, when included, is query 0 with parent -1.
        :func:`dspark.tree_query_layout` converts :func:`dspark.verify_batch`'s layout.
    sm_scale : float, optional
        Softmax scale, default ``1 / sqrt(D)``.
    logits_soft_cap : float, optional
        If > 0, logits become ``cap * tanh(logits / cap)`` (after scaling; Gemma 2).
    window_left : int
        Sliding window: a query at logical position p sees keys with position >= p - window_left
        (-1 = no window). Positions are ``prefix_len + depth`` for queries (see
        :func:`dspark.tree_positions`) and the slot index for the prefix.
    return_lse : bool
        Also return the natural-log sum-exp of each row's (scaled, capped) logits.
    max_qo_len, max_kv_len : int, optional
        Largest ``qo_len`` / ``kv_len``; on CUDA with ``validate=False`` they avoid a host sync
        (CUDA graphs). Ignored on the CPU.
    validate : bool
        Check index tensors on the host (always done for CPU tensors). On CUDA this copies
        ``qo_indptr``, ``block_table``, ``kv_len`` and ``parents`` to the host once.
    out : Tensor (T, H, D), optional
        Preallocated output (dtype of ``q``).
    cuda_kernel : {"auto", "simt", "mma"}
        CUDA only: "auto" uses the CuTe tensor-core kernel for bf16/f16 when it was built (sm_80+)
        and the plain CUDA kernel otherwise; "simt" / "mma" force one (tests, debugging).

    Returns
    -------
    out : Tensor (T, H, D)
        Dtype of ``q``; accumulation is in float32.
    lse : Tensor (T, H) float32
        Only with ``return_lse=True``.

    Raises
    ------
    TypeError
        A non-tensor or a wrong dtype.
    ValueError
        Mismatched shapes or heads, page ids out of range, ``kv_len`` beyond the block table or
        below ``qo_len``, invalid ``parents``; each message names the argument.

    Examples
    --------
    >>> import torch, dspark
    >>> k = torch.randn(4, 16, 2, 64); v = torch.randn(4, 16, 2, 64)
    >>> q = torch.randn(3, 8, 64)  # one request: anchor + a 2-node tree, 8 heads over 2 KV heads
    >>> o = dspark.verify_attention(q, k, v, torch.tensor([0, 3], dtype=torch.int32),
    ...     torch.tensor([[2, 0, 1, 3]], dtype=torch.int32), torch.tensor([40], dtype=torch.int32),
    ...     parents=torch.tensor([-1, 0, 0], dtype=torch.int32))
    >>> o.shape
    torch.Size([3, 8, 64])
    """
    # Shapes, dtypes, devices, heads and indices are checked by the native op (csrc/ops/
    # verify_attention.cpp); here only what the conversions and the allocations need.
    check_tensor("q", q, dtypes=_FLOATS, shape=(None, None, None))
    t, h, d = q.shape
    for name, x in (("k_cache", k_cache), ("v_cache", v_cache), ("qo_indptr", qo_indptr),
                    ("block_table", block_table), ("kv_len", kv_len)):  # fmt: skip
        check_tensor(name, x)
    if parents is not None:
        parents = check_tensor("parents", parents).contiguous()
    # A window wider than any int32 kv_len is no window.
    window_left = min(as_int("window_left", window_left, -1, 2**63 - 1), 2**31 - 1)
    cap = 0.0 if logits_soft_cap is None else as_float("logits_soft_cap", logits_soft_cap)
    scale = 1.0 / math.sqrt(d) if sm_scale is None else as_float("sm_scale", sm_scale)
    if cuda_kernel not in _CUDA_KERNELS:
        raise ValueError(f"cuda_kernel: expected 'auto', 'simt' or 'mma', got {cuda_kernel!r}")
    qo_indptr, kv_len, block_table = (
        qo_indptr.contiguous(),
        kv_len.contiguous(),
        block_table.contiguous(),
    )

    if q.is_cuda:
        require_cuda("q")
        if k_cache.dim() == 4 and (validate or max_qo_len is None or max_kv_len is None):
            num_pages, page_size = k_cache.shape[:2]
            mq, mk = _C.check_verify_attention_indices(
                qo_indptr.cpu(),
                block_table.cpu(),
                kv_len.cpu(),
                None if parents is None else parents.cpu(),
                t,
                num_pages,
                page_size,
            )
            max_qo_len = mq if max_qo_len is None else max_qo_len
            max_kv_len = mk if max_kv_len is None else max_kv_len
    if out is None:
        out = torch.empty(t, h, d, dtype=q.dtype, device=q.device)
    else:
        check_tensor("out", out)
    lse = torch.empty(t, h, dtype=torch.float32, device=q.device) if return_lse else None
    _C.verify_attention(
        q,
        k_cache,
        v_cache,
        qo_indptr,
        block_table,
        kv_len,
        parents,
        scale,
        cap,
        window_left,
        -1 if max_qo_len is None else int(max_qo_len),
        -1 if max_kv_len is None else int(max_kv_len),
        out,
        lse,
        _CUDA_KERNELS[cuda_kernel],
        cuda_stream(q),
    )
    if return_lse:
        assert lse is not None
        return out, lse
    return out
