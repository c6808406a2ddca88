"""Plain PyTorch references for dspark.verify_attention.

`verify_attention_ref` is the obvious version: per request, gather the cache slot by slot, build
the dense [q, kv] visibility mask from the ancestor rule by walking parents, and run masked
softmax attention. `verify_attention_sdpa` is the vectorised baseline the benchmark times: the
same dense mask batched over requests, fed to torch.nn.functional.scaled_dot_product_attention.
"""

from __future__ import annotations

import math

import torch

__all__ = ["dense_verify_mask", "gather_kv", "verify_attention_ref", "verify_attention_sdpa"]


def _depth(par: list[int] | None, i: int) -> int:
    if par is None:
        return i
    d = 0
    while par[i] >= 0:
        i = par[i]
        d += 1
    return d


def dense_verify_mask(
    parents: list[int] | None, qo_len: int, kv_len: int, window_left: int = -1
) -> torch.Tensor:
    """(qo_len, kv_len) bool: prefix visible, then self and ancestors; an optional window."""
    prefix = kv_len - qo_len
    mask = torch.zeros(qo_len, kv_len, dtype=torch.bool)
    for i in range(qo_len):
        mask[i, :prefix] = True
        a = i
        while a >= 0:  # self, then each ancestor
            mask[i, prefix + a] = True
            a = (a - 1) if parents is None else parents[a]
        if window_left >= 0:
            pos_i = prefix + _depth(parents, i)
            for k in range(kv_len):
                pos_k = k if k < prefix else prefix + _depth(parents, k - prefix)
                if pos_i - pos_k > window_left:
                    mask[i, k] = False
    return mask


def gather_kv(cache: torch.Tensor, block_table_row: torch.Tensor, kv_len: int) -> torch.Tensor:
    """(kv_len, Hk, D): slot s is at page block_table_row[s // page_size], offset s % page_size."""
    page_size = cache.shape[1]
    rows = [cache[int(block_table_row[s // page_size]), s % page_size] for s in range(kv_len)]
    return torch.stack(rows) if rows else cache.new_zeros(0, *cache.shape[2:])


def verify_attention_ref(
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
    upcast: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (T, H, D) in q's dtype, lse (T, H) float32). upcast=False computes in q's dtype."""
    t, h, d = q.shape
    hk = k_cache.shape[2]
    g = h // hk
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    ct = torch.float32 if upcast else q.dtype
    out = torch.zeros(t, h, d, dtype=q.dtype)
    lse = torch.full((t, h), float("-inf"), dtype=torch.float32)
    ip = qo_indptr.tolist()
    par = None if parents is None else parents.tolist()
    for r in range(len(ip) - 1):
        q0, n = ip[r], ip[r + 1] - ip[r]
        if n == 0:
            continue
        kl = int(kv_len[r])
        k = gather_kv(k_cache, block_table[r], kl).to(ct).repeat_interleave(g, dim=1)  # [L, H, D]
        v = gather_kv(v_cache, block_table[r], kl).to(ct).repeat_interleave(g, dim=1)
        mask = dense_verify_mask(None if par is None else par[q0 : q0 + n], n, kl, window_left)
        qr = q[q0 : q0 + n].to(ct)  # [n, H, D]
        s = torch.einsum("nhd,lhd->hnl", qr, k) * scale
        if logits_soft_cap:
            s = logits_soft_cap * torch.tanh(s / logits_soft_cap)
        s = s.masked_fill(~mask[None], float("-inf"))
        p = torch.softmax(s, dim=-1)
        out[q0 : q0 + n] = torch.einsum("hnl,lhd->nhd", p, v).to(q.dtype)
        lse[q0 : q0 + n] = torch.logsumexp(s.float(), dim=-1).T
    return out, lse


def verify_attention_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Batched SDPA with a dense mask: q (R, H, n, D), k/v (R, Hk, L, D), mask (R, 1, n, L) bool."""
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=sm_scale, enable_gqa=k.shape[1] != q.shape[1]
    )
