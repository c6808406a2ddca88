"""Target-cache size per token and the cost of the chunked training loss.

Run from the repo root: ``python -m bench.bench_training``. Prints (1) bytes per token of the
cache for a Qwen3-4B-shaped target (d = 2560, 5 feature layers) under each storage option,
against the reference's 30,726 B/token, with the loss fraction measured on the repo's eval
prompts regenerated-format data when available (else 1.0), plus one measured cache on a tiny
target to validate the estimator; (2) time and analytic peak memory of the DSpark loss with the
target distribution computed in chunks vs all at once. No asserts.
"""

from __future__ import annotations

import tempfile

import torch

from bench._harness import machine_line, time_ms
from dspark.models import block_targets, build_drafter
from dspark.training import build_cache, estimate_bytes_per_token
from dspark.training.losses import block_loss

REF_BPT = 30726
D, LAYERS, V = 2560, 5, 151936


def bytes_table(loss_fraction: float) -> None:
    print(
        f"\nCache bytes/token, Qwen3-4B shape (d={D}, {LAYERS} feature layers); "
        f"loss fraction {loss_fraction:.2f}"
    )
    print(f"{'storage (features / final hidden)':<44} | {'B/token':>9} | {'vs reference':>12}")
    rows = [("reference (bf16 / bf16 at every token)", REF_BPT)]
    for fdt, ldt, frac in [
        ("bfloat16", "bfloat16", 1.0),
        ("bfloat16", "bfloat16", loss_fraction),
        ("fp8", "bfloat16", loss_fraction),
        ("fp8", "fp8", loss_fraction),
    ]:
        rows.append(
            (
                f"{fdt} / {ldt}, final rows {frac:.2f}",
                estimate_bytes_per_token(D, LAYERS, fdt, ldt, frac),
            )
        )
    rows.append(("online (target in the loop, no cache)", 0.0))
    for name, b in rows:
        ratio = f"{REF_BPT / b:.2f}x less" if b else "no disk"
        print(f"{name:<44} | {b:>9.0f} | {ratio:>12}")


def measured_tiny() -> float:
    from tests._tiny import tiny_qwen3
    from tests.training.conftest import CONVERSATIONS, tiny_tokenizer

    target = tiny_qwen3(vocab=260, layers=4, hidden=64)
    print("\nMeasured cache on a tiny target (d=64, 3 layers): file bytes vs estimate")
    print(f"{'storage':<24} | {'measured':>9} | {'estimate':>9}")
    frac = 1.0
    for fdt, ldt in [("bfloat16", "bfloat16"), ("fp8", "bfloat16"), ("fp8", "fp8")]:
        with tempfile.TemporaryDirectory() as d:
            m = build_cache(
                target,
                tiny_tokenizer(),
                CONVERSATIONS * 16,
                d,
                [0, 1, 2],
                feature_dtype=fdt,
                last_dtype=ldt,
            )
        frac = m["num_last_rows"] / m["num_tokens"]
        est = estimate_bytes_per_token(64, 3, fdt, ldt, frac)
        print(f"{fdt + ' / ' + ldt:<24} | {m['bytes_per_token']:>9.1f} | {est:>9.1f}")
    return frac


def loss_table() -> None:
    from tests._tiny import tiny_qwen3

    n, g, vocab, d = 128, 7, 8192, 128
    target = tiny_qwen3(vocab=vocab, layers=3, hidden=d)
    drafter = build_drafter(
        "dspark", target, num_layers=1, block_size=g, markov_rank=32, feature_layers=[0, 1]
    )
    total = 600
    ids = torch.randint(0, vocab, (total,))
    cu = torch.tensor([0, total])
    feats, last = torch.randn(total, 2 * d), torch.randn(total, d)
    anchors = torch.randperm(total - g)[:n].sort().values
    mask = torch.ones(total, dtype=torch.bool)
    labels, valid = block_targets(ids, cu, anchors, g, mask)
    print(f"\nDSpark loss forward+backward, N={n} anchors, G={g}, V={vocab} ({machine_line()})")
    print(f"{'chunk':>6} | {'logits':>14} | {'ms':>8} | {'live fp32 [chunk,G,V] (MB)':>27}")
    for chunk, heads in ((n, True), (32, True), (32, False), (8, False)):

        def run(chunk=chunk, heads=heads):
            out = drafter.forward_train(feats, ids, cu, anchors, labels, heads=heads)
            p = block_loss(drafter, out, anchors, labels, valid, last, chunk=chunk, input_ids=ids)
            (p.total / p.weight).backward()

        ms = time_ms(run, warmup=1, iters=3)
        live = 4 * chunk * g * vocab * 4 / 1e6  # log p_d, p_d, log p_t, p_t of one chunk
        where = "whole (model)" if heads else "per chunk"
        print(f"{chunk:>6} | {where:>14} | {ms:>8.1f} | {live:>27.1f}")
    full = 4 * 512 * 7 * V * 4 / 2**30
    ch = 4 * 64 * 7 * V * 4 / 2**30
    print(
        f"Qwen3-4B, N=512: reference-style ~{full:.1f} GiB of live fp32 [N,G,V] tensors; "
        f"chunk 64: ~{ch:.2f} GiB; with heads=False the draft logits U and U+B "
        f"({2 * 2 * 512 * 7 * V / 2**30:.1f} GiB in bf16) are also never whole"
    )


def main() -> None:
    torch.manual_seed(0)
    frac = measured_tiny()
    bytes_table(frac)
    loss_table()


if __name__ == "__main__":
    main()
