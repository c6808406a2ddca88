"""Benchmark dspark.draft_step against the batched PyTorch loop (one GEMM [R, r] x [r, V] per step,
add, softmax, sample), the way the sequential stage runs without a fused op.

Run from the repository root: ``python -m bench.bench_draft_step`` (``--quick`` for a smoke run).
Bytes: W2 is read once per step (exact mode) plus U and the written logits; candidate mode reads
U and writes the logits row.
"""

from __future__ import annotations

import argparse

import torch

import dspark
from bench._harness import Table, add_timing_args, timer_from_args


def torch_loop(U, w1, w2, anchors, temperature):
    prev = anchors.long()
    toks, logits = [], []
    for k in range(U.shape[1]):
        lg = (U[:, k].float() + w1[prev].float() @ w2.float().T) / temperature[:, None]
        e = torch.empty_like(lg).exponential_()
        prev = (torch.softmax(lg, -1) / e).argmax(-1)
        toks.append(prev)
        logits.append(lg)
    return torch.stack(toks, 1), torch.stack(logits, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    add_timing_args(ap)
    args = ap.parse_args()
    time_ms = timer_from_args(args)
    shapes = [(64, 7, 151936, 256), (1, 7, 151936, 256)] if not args.quick else [(4, 3, 5000, 32)]
    table = Table("draft_step (vanilla Markov head, T=1)")
    for R, G, V, r in shapes:
        g = torch.Generator().manual_seed(0)
        U = torch.randn(R, G, V, generator=g)
        w1, w2 = torch.randn(V, r, generator=g) * 0.05, torch.randn(V, r, generator=g) * 0.05
        anchors = torch.randint(0, V, (R,), generator=g)
        temp = torch.ones(R)
        ref = time_ms(
            lambda U=U, w1=w1, w2=w2, a=anchors, t=temp: torch_loop(U, w1, w2, a, t),
            warmup=1,
            iters=3,
        )
        for cand in (0, 256):
            ours = time_ms(
                lambda U=U, w1=w1, w2=w2, a=anchors, t=temp, cand=cand: dspark.draft_step(
                    U, w1, w2, a, temperature=t, seed=0, candidates=cand
                ),
                warmup=1,
                iters=3,
            )
            nbytes = G * (V * r * 4 if cand == 0 else 0) + 2 * R * G * V * 4
            table.add(
                f"R={R} G={G} V={V} r={r} {'exact' if cand == 0 else f'top-{cand} candidates'}",
                ref,
                ours,
                nbytes,
            )
    table.print()


if __name__ == "__main__":
    main()
