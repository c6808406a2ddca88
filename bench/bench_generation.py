"""Speculative generation on CPU: target-only greedy decoding vs dspark.generate.

Run from the repo root: ``python -m bench.bench_generation [--threads 1 --clock cpu]
[--table budget|speed|all]``.

``budget`` (issue 15's budget, micro-zoo target, B = 1 and 8): transformers.generate's per-token
time, the engine's plain decode step (one packed 1-token step per request + argmax, appended:
greedy decoding on the engine core), a
speculative round with zero drafts on the same engine (SpeculativeGenerator, a drafter whose
proposals a scheduler cuts to 0: target step + verify_batch + rollback + bookkeeping), and the
ratios round / plain step (budget <= 1.1) and engine plain step / HF generate (budget < 1).
All three are per-token times of decoding ``new`` tokens after the same prompt (the time of 1
token subtracted, so no prefill), hence over the same KV lengths. Medians over interleaved
repeats; use ``--clock cpu`` on a shared machine.

``speed`` prints case | ref ms/tok | dspark ms/tok | ratio | tau, where ms/tok is wall time / new tokens per
request (one "token" = one step of all B requests). "ref" is the target's own greedy decoding with
a KV cache (one forward per token). Two dspark rows per model: a randomly initialised DSpark
drafter (tau ~ 1: the pure overhead of drafting + verification) and a "perfect" drafter that
replays the greedy continuation (tau = G + 1: the best case of the loop on this machine).
CPU numbers only; they say nothing about GPU speed (see docs/build.md section 4). No asserts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import DynamicCache, Qwen3Config, Qwen3ForCausalLM

import dspark
from bench._harness import add_timing_args, machine_line, timer_from_args
from bench.bench_engine import decode_paths, per_token
from dspark.integrations.hf_compat import cache_kwargs
from dspark.models import Drafter, DrafterConfig, Proposal, build_drafter

NEW_TOKENS, BLOCK = 48, 4


def make_target(hidden: int, layers: int, vocab: int) -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 2),
        num_key_value_heads=max(hidden // 128, 1),
        head_dim=64,
        intermediate_size=3 * hidden,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    model = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


@torch.no_grad()
def greedy_cached(target, ids: torch.Tensor, n: int) -> torch.Tensor:
    cache = DynamicCache(config=target.config)
    out = target(ids, **cache_kwargs(target, cache), use_cache=True)
    seq = [out.logits[:, -1].argmax(-1, keepdim=True)]
    for _ in range(n - 1):
        out = target(seq[-1], **cache_kwargs(target, cache), use_cache=True)
        seq.append(out.logits[:, -1].argmax(-1, keepdim=True))
    return torch.cat([ids, *seq], dim=1)


class ReplayDrafter(Drafter):
    """Proposes the known greedy continuation (the best case for the loop)."""

    def __init__(self, target, continuation: torch.Tensor, prompt_len: int) -> None:
        super().__init__(
            DrafterConfig.for_target("dflash", target.config, block_size=BLOCK), target
        )
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.cont, self.prompt_len = continuation, prompt_len

    def new_state(self, batch):
        return {"len": torch.zeros(batch, dtype=torch.int64), "rows": torch.arange(batch)}

    def select(self, state, indices):
        state["len"], state["rows"] = state["len"][indices], state["rows"][indices]

    def commit(self, state, features, next_tokens, counts):
        state["len"] += counts

    def propose(
        self, state, anchor, *, temperature, top_k=None, top_p=None, generator=None, num_tokens=None
    ):
        g = num_tokens or BLOCK
        start = state["len"] + 1  # the anchor sits at position len; drafts follow it
        idx = (start[:, None] + torch.arange(g)[None]).clamp_max(self.cont.shape[1] - 1)
        toks = self.cont[state["rows"][:, None], idx]
        return Proposal(toks, torch.zeros(*toks.shape, self.config.vocab_size), None)


def timed(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def budget_row(target, batch: int, timer, reps: int) -> tuple[float, float, float]:
    """(HF generate ms/token, engine plain decode step ms, zero-draft round ms), medians of
    ``reps`` interleaved measurements; per-token times exclude the prefill."""
    prompt, new = 96, 33
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, target.config.vocab_size, (batch, prompt), generator=g)
    paths, runner = decode_paths(target, ids, new)
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(reps):  # interleaved, so drift affects the three alike
        for k, fn in paths.items():
            times[k].append(per_token(timer, fn, new, warmup=1, iters=1))
    runner.close()
    return tuple(statistics.median(times[k]) for k in paths)  # type: ignore[return-value]


def budget_table(timer, reps: int) -> None:
    from dspark.zoo import load_zoo

    target = load_zoo(assistant=False).target.float().eval()
    print(f"### engine core budget (issue 15): micro-zoo target, prompt 96\n\n{machine_line()}\n")
    print(
        "| B | transformers.generate ms/token | engine plain decode step ms | zero-draft round ms "
        "| round / plain step (<= 1.1) | engine plain / HF generate (< 1) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for batch in (1, 8):
        hf, step, rnd = budget_row(target, batch, timer, reps)
        print(
            f"| {batch} | {hf:.3f} | {step:.3f} | {rnd:.3f} | {rnd / step:.3f} | {step / hf:.3f} |"
        )


def speed_table() -> None:
    torch.set_num_threads(1)  # the machine is shared: one thread gives stabler medians
    print(f"torch threads: {torch.get_num_threads()}, new tokens: {NEW_TOKENS}, block: {BLOCK}")
    print(f"{'case':<52} | {'ref ms/tok':>10} | {'dspark ms/tok':>13} | {'ratio':>6} | {'tau':>5}")
    for hidden, layers, vocab, bsz in [(64, 4, 512, 1), (512, 8, 8192, 1), (512, 8, 8192, 4)]:
        target = make_target(hidden, layers, vocab)
        ids = torch.randint(0, vocab, (bsz, 32))
        ref_t = timed(lambda t=target, i=ids: greedy_cached(t, i, NEW_TOKENS))
        cont = greedy_cached(target, ids, NEW_TOKENS + BLOCK + 2)
        drafters = {
            "dspark (random init, 2 layers)": build_drafter(
                "dspark", target, num_layers=2, block_size=BLOCK, markov_rank=64
            ),
            "replay (perfect drafts)": ReplayDrafter(target, cont, ids.shape[1]),
        }
        for name, drafter in drafters.items():
            res = {}

            def run(drafter=drafter, res=res, target=target, ids=ids):
                res["out"] = dspark.generate(
                    target, drafter, ids, max_new_tokens=NEW_TOKENS, temperature=0.0
                )

            t = timed(run)
            assert torch.equal(res["out"].sequences, cont[:, : ids.shape[1] + NEW_TOKENS])
            case = f"d={hidden} L={layers} V={vocab} B={bsz} {name}"
            per_ref, per = 1e3 * ref_t / NEW_TOKENS, 1e3 * t / NEW_TOKENS
            print(
                f"{case:<52} | {per_ref:10.2f} | {per:13.2f} | {per_ref / per:6.2f} | "
                f"{res['out'].acceptance_length:5.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_timing_args(ap)
    ap.add_argument("--table", choices=("budget", "speed", "all"), default="all")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repeats (budget table)")
    args = ap.parse_args()
    timer = timer_from_args(args)
    if args.table in ("budget", "all"):
        budget_table(timer, args.reps)
    if args.table in ("speed", "all"):
        speed_table()


if __name__ == "__main__":
    main()
