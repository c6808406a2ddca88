"""Benchmark dspark.verify_batch against the vectorised PyTorch baseline (tests/reference).

Run from the repository root: ``python -m bench.bench_verify`` (``--quick`` for a smoke run).
Bytes are counted analytically from what the walk actually touched: one statistics pass over every
visited logits row, the residual mass and race passes over target and draft rows where a child
was rejected, and the race pass over the bonus row.
"""

from __future__ import annotations

import argparse

import torch
from tests.reference.verify_vectorized import verify_chain_torch, verify_tree_torch

import dspark
from bench._harness import Table, add_timing_args, timer_from_args


def make_inputs(
    R: int, n: int, V: int, *, tree: bool, probs: bool, noise: float = 1.0, seed: int = 0
):
    g = torch.Generator().manual_seed(seed)
    if tree:  # first level of `width` children, the rest spread below them
        width = min(4, n)
        parents = [-1] * width + [
            int(torch.randint(0, i, (1,), generator=g)) for i in range(width, n)
        ]
    else:
        parents = list(range(-1, n - 1))
    N = R * n
    target = torch.randn(N + R, V, generator=g) * 2.0
    rows_of_parent = torch.tensor([r * (n + 1) + p + 1 for r in range(R) for p in parents])
    draft_logits = target[rows_of_parent] + torch.randn(N, V, generator=g) * noise
    draft_probs = torch.softmax(draft_logits, -1)
    tokens = torch.multinomial(draft_probs, 1, generator=g).squeeze(1)
    inputs = {
        "target": torch.softmax(target, -1) if probs else target,
        "draft_tokens": tokens,
        "draft_indptr": torch.arange(0, N + 1, n, dtype=torch.int32),
        "parents": torch.tensor(parents * R, dtype=torch.int32) if tree else None,
        "draft_probs": draft_probs,
        "temperature": torch.ones(R),
        "target_is_probs": probs,
    }
    return inputs


def bytes_touched(res: dspark.VerifyResult, V: int, probs: bool, elt: int = 4) -> float:
    """One statistics pass per visited logits row (probabilities need none), then one race pass:
    over the bonus row, or over the target and draft rows where the last child was rejected."""
    total = 0.0
    for k, bonus in zip(res.accept_len.tolist(), res.final_is_bonus.tolist(), strict=True):
        if not probs:
            total += (k + 1) * V * elt
        total += V * elt if bonus else 2 * V * elt
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    add_timing_args(ap)
    args = ap.parse_args()
    time_ms = timer_from_args(args)
    shapes = [(16, 5, 32000), (32, 8, 128256), (64, 7, 151936)]
    trees = [(1, 4), (8, 4), (1, 64), (8, 64)]
    tree_v = 120000
    if args.quick:
        shapes, trees, tree_v = [(4, 3, 4000)], [(2, 8)], 4000
    table = Table("verify_batch (sampled, T=1, draft_probs given)")
    for probs in (False, True):
        for R, n, V in shapes:
            x = make_inputs(R, n, V, tree=False, probs=probs)
            kw = {
                "draft_probs": x["draft_probs"],
                "temperature": x["temperature"],
                "target_is_probs": probs,
            }
            args = (x["target"], x["draft_tokens"], x["draft_indptr"])
            res = dspark.verify_batch(*args, seed=torch.arange(R), **kw)
            ours = time_ms(
                lambda a=args, kw=kw, R=R: dspark.verify_batch(*a, seed=torch.arange(R), **kw)
            )
            ref = time_ms(lambda a=args, kw=kw: verify_chain_torch(*a, **kw), warmup=1, iters=3)
            mean_acc = res.accept_len.float().mean().item()
            table.add(
                f"chain B={R} n={n} V={V} {'probs' if probs else 'logits'} (acc {mean_acc:.1f})",
                ref,
                ours,
                bytes_touched(res, V, probs),
            )
    for R, n in trees:
        x = make_inputs(R, n, tree_v, tree=True, probs=False)
        kw = {
            "parents": x["parents"],
            "draft_probs": x["draft_probs"],
            "temperature": x["temperature"],
        }
        res = dspark.verify_batch(
            x["target"], x["draft_tokens"], x["draft_indptr"], seed=torch.arange(R), **kw
        )
        ours = time_ms(
            lambda x=x, kw=kw, R=R: dspark.verify_batch(
                x["target"], x["draft_tokens"], x["draft_indptr"], seed=torch.arange(R), **kw
            )
        )
        ref = time_ms(
            lambda x=x, kw=kw: verify_tree_torch(
                x["target"], x["draft_tokens"], x["draft_indptr"], **kw
            ),
            warmup=1,
            iters=3,
        )
        table.add(
            f"tree B={R} N={n} V={tree_v} logits (acc {res.accept_len.float().mean().item():.1f})",
            ref,
            ours,
            None,
        )
    table.print()


if __name__ == "__main__":
    main()
