"""Benchmark dspark.verify_attention against SDPA with a dense mask (tests/reference).

Run from the repository root: ``python -m bench.bench_verify_attention`` (``--quick`` for a smoke
run). Two baselines per case, both with a prebuilt dense bool mask [R, 1, n, L] outside the timed
region: "SDPA, KV unpaged" gets every advantage (contiguous K/V [R, Hk, L, D] prepared outside the
timed region, enable_gqa); "gather + repeat_kv + SDPA" is what an engine does on a paged cache
(and what transformers' sdpa path does whenever a mask is given). dspark reads the paged cache
(page_size 16, pages shuffled) and evaluates the mask from ``parents`` inside the kernel.
Bytes are the KV bytes read (each request's K and V once: R * L * Hk * D * 2 * elt) plus q and
out; "% of copy peak" compares them with the measured copy bandwidth (read + write).
"""

from __future__ import annotations

import argparse

import torch
from tests.reference.verify_attention import dense_verify_mask, verify_attention_sdpa

import dspark
from bench._harness import Table, cpu_time_ms, time_ms


def random_tree(n: int, g: torch.Generator) -> list[int]:
    """Anchor (query 0) plus n - 1 nodes, each under a random earlier node (bushy near the top)."""
    return [-1] + [
        int(torch.randint(0, max(1, i // 2 + 1), (1,), generator=g)) for i in range(1, n)
    ]


def make_case(
    R: int,
    prefix: int,
    n: int,
    H: int,
    Hk: int,
    D: int,
    dtype: torch.dtype,
    tree: bool,
    page_size: int = 16,
    seed: int = 0,
):
    g = torch.Generator().manual_seed(seed)
    L = prefix + n
    pages = (L + page_size - 1) // page_size
    perm = torch.randperm(R * pages, generator=g).to(torch.int32)
    k_cache = torch.randn(R * pages, page_size, Hk, D, generator=g).to(dtype)
    v_cache = torch.randn(R * pages, page_size, Hk, D, generator=g).to(dtype)
    block_table = perm.view(R, pages).contiguous()
    q = torch.randn(R * n, H, D, generator=g).to(dtype)
    par = random_tree(n, g) if tree else None
    parents = torch.tensor(par * R, dtype=torch.int32) if tree else None
    qo_indptr = torch.arange(0, R * n + 1, n, dtype=torch.int32)
    kv_len = torch.full((R,), L, dtype=torch.int32)
    # Baseline inputs: unpaged K/V and the dense mask, prepared outside the timed region.
    slots = torch.arange(L)
    rows = block_table[:, slots // page_size].long()  # [R, L]
    k = k_cache[rows, slots % page_size].permute(0, 2, 1, 3).contiguous()  # [R, Hk, L, D]
    v = v_cache[rows, slots % page_size].permute(0, 2, 1, 3).contiguous()
    mask = dense_verify_mask(par, n, L)[None, None].expand(R, 1, n, L).contiguous()
    qb = q.view(R, n, H, D).transpose(1, 2).contiguous()  # [R, H, n, D]
    ours = dict(
        q=q,
        k_cache=k_cache,
        v_cache=v_cache,
        qo_indptr=qo_indptr,
        block_table=block_table,
        kv_len=kv_len,
        parents=parents,
    )
    engine = (q, k_cache, v_cache, block_table, mask, n, L, H // Hk)
    return ours, (qb, k, v, mask), engine


def sdpa_engine(q, k_cache, v_cache, block_table, mask, n, L, G):
    """SDPA as an engine runs it on a paged cache: gather the pages, repeat KV heads (what
    transformers' sdpa path does whenever a mask is given), then SDPA with the dense mask."""
    R, ps = block_table.shape[0], k_cache.shape[1]
    slots = torch.arange(L)
    rows = block_table[:, slots // ps].long()
    k = k_cache[rows, slots % ps].permute(0, 2, 1, 3).repeat_interleave(G, dim=1)
    v = v_cache[rows, slots % ps].permute(0, 2, 1, 3).repeat_interleave(G, dim=1)
    qb = q.view(R, n, -1, q.shape[-1]).transpose(1, 2)
    return torch.nn.functional.scaled_dot_product_attention(qb, k, v, attn_mask=mask)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small shapes, few iterations")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads")
    ap.add_argument("--iters", type=int, default=None, help="timed runs per case (median)")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu = process CPU time (use with --threads 1 on a loaded machine)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = time_ms if args.clock == "wall" else cpu_time_ms
    iters = args.iters or (3 if args.quick else 10)
    R, prefix = (4, 256) if args.quick else (32, 2048)
    H, Hk, D = 32, 8, 128
    cases = [("decode n=1", 1, False), ("chain n=8", 8, False), ("tree n=64", 64, True)]
    table = Table(
        f"verify_attention vs SDPA + dense mask (R={R}, prefix={prefix}, H={H}, Hk={Hk}, D={D}; "
        f"{args.clock} clock)"
    )
    for dtype in (torch.float32, torch.bfloat16):
        for name, n, tree in cases:
            ours, base, engine = make_case(R, prefix, n, H, Hk, D, dtype, tree)
            out = dspark.verify_attention(**ours)
            ref = verify_attention_sdpa(*base)
            err = (out.float() - ref.transpose(1, 2).reshape(out.shape).float()).abs().max().item()
            ref_ms = timer(lambda base=base: verify_attention_sdpa(*base), iters=iters)
            eng_ms = timer(lambda engine=engine: sdpa_engine(*engine), iters=iters)
            ours_ms = timer(lambda ours=ours: dspark.verify_attention(**ours), iters=iters)
            elt = torch.finfo(dtype).bits // 8
            L = prefix + n
            nbytes = R * L * Hk * D * 2 * elt + 2 * R * n * H * D * elt
            label = f"{str(dtype).removeprefix('torch.')} {name}"
            table.add(f"{label} vs SDPA, KV unpaged (err {err:.1e})", ref_ms, ours_ms, nbytes)
            table.add(f"{label} vs gather + repeat_kv + SDPA", eng_ms, ours_ms, nbytes)
    table.print()


if __name__ == "__main__":
    main()
