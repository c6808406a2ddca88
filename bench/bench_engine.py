"""The engine core's budget: a decode step and a speculative round against transformers.

Run from the repo root: ``python -m bench.bench_engine [--threads 1] [--clock cpu] [--zoo]``.
One table (the harness's shape; "ref" is transformers, "dspark" the paged engine):

- ``transformers.generate`` per-token time (greedy, DynamicCache) vs the engine's plain decode
  step (one packed forward of 1 new token per request over the paged cache + argmax, appended;
  per token over the same KV lengths as the other columns);
- a plain decode step of the engine vs a speculative round with zero drafts on the same engine
  (target step + ``verify_batch`` + rollback + bookkeeping, via ``SpeculativeGenerator`` with a
  drafter that proposes nothing): the round's fixed overhead, which the budget caps at 1.1x.

Targets: the micro zoo's (``--zoo``) and random Qwen3 targets of two depths. CPU numbers of this
machine only, measured side by side in one run; no asserts.

With ``--zoo`` a second table puts the zoo's target decode step beside each drafter's propose of
``G`` tokens, both measured inside :class:`dspark.engine.Engine` steps of one request (its
``last_step`` timings: plain steps with ``speculation="none"``, drafting with ``"fixed"``): the
issue's regime asks for a target step of at least 5x a drafter forward (the "speedup" column).
"""

from __future__ import annotations

import argparse

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

import dspark
from bench._harness import Table, add_timing_args, timer_from_args
from dspark.engine import ModelRunner, StepRequest
from dspark.models import Drafter, DrafterConfig, Proposal

PROMPT, NEW = 96, 32


def random_target(layers: int) -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=4096,
        hidden_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=768,
        max_position_embeddings=1024,
    )
    return Qwen3ForCausalLM(cfg).eval()


class NullDrafter(Drafter):
    """Proposes tokens the scheduler never verifies (zero drafts per round)."""

    def __init__(self, target) -> None:
        super().__init__(DrafterConfig.for_target("dflash", target.config, block_size=1), target)
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.confidence = torch.nn.Module()  # confidences of 1: the scheduler decides (0)

    def new_state(self, batch):
        return None

    def select(self, state, indices):
        pass

    def commit(self, state, features, next_tokens, counts):
        pass

    def propose(
        self, state, anchor, *, temperature, top_k=None, top_p=None, generator=None, num_tokens=None
    ):
        n, v = anchor.shape[0], self.config.vocab_size
        return Proposal(torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, 1, v), torch.ones(n, 1))


def zero_lengths(conf: torch.Tensor) -> torch.Tensor:
    return torch.zeros(conf.shape[0], dtype=torch.int64)


def decode_paths(target, ids: torch.Tensor, new: int) -> tuple[dict, ModelRunner]:
    """The three ways of decoding ``ids [B, P]`` greedily that the budget compares, each a
    callable of the token count: ``hf_generate``, ``engine_decode`` (prefill, then plain 1-token
    steps on the engine core) and ``rounds`` (speculative rounds with zero drafts). Returns them
    and the runner (close it when done)."""
    batch, prompt = ids.shape

    def hf_generate(n: int) -> None:
        with torch.no_grad():
            target.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )

    runner = ModelRunner(target, num_pages=batch * (prompt + new + 32) // 16 + 4, page_size=16)

    def engine_decode(n: int) -> None:
        for r in runner.cache.requests:
            runner.cache.free(r)
        out = runner.run([StepRequest(b, ids[b]) for b in range(batch)])
        tok = out.logits.argmax(-1)
        for _ in range(n - 1):
            out = runner.run([StepRequest(b, tok[b : b + 1]) for b in range(batch)])
            tok = out.logits.argmax(-1)

    gen = dspark.SpeculativeGenerator(
        target, NullDrafter(target), scheduler=zero_lengths, engine="paged"
    )

    def rounds(n: int) -> None:
        gen.generate(ids, max_new_tokens=n, temperature=0.0)

    return {"hf_generate": hf_generate, "engine_decode": engine_decode, "rounds": rounds}, runner


def per_token(timer, fn, new: int, *, warmup: int = 1, iters: int = 3) -> float:
    """Decode time per token: (time of ``new`` tokens - time of 1) / (new - 1), no prefill."""
    full = timer(lambda: fn(new), warmup=warmup, iters=iters)
    first = timer(lambda: fn(1), warmup=warmup, iters=iters)
    return (full - first) / (new - 1)


def bench_target(name: str, target, timer, table: Table, batch: int) -> None:
    ids = torch.randint(0, target.config.vocab_size, (batch, PROMPT))
    paths, runner = decode_paths(target, ids, NEW)
    hf, step, spec = (
        per_token(timer, paths[k], NEW) for k in ("hf_generate", "engine_decode", "rounds")
    )
    runner.close()
    table.add(f"{name} B={batch}: transformers.generate per token vs engine decode step", hf, step)
    table.add(f"{name} B={batch}: engine decode step vs zero-draft speculative round", step, spec)


def engine_step_costs(zoo, kind: str, steps: int = 48) -> tuple[float, float]:
    """Median ms of the zoo target's plain decode step and of ``kind``'s propose (G tokens),
    each from ``Engine.last_step`` over ``steps`` decode steps of one request."""
    import statistics

    from dspark import SamplingParams
    from dspark.engine import Engine

    prompt = zoo.tokenizer("def main(args):\n    ", return_tensors="pt").input_ids[0].tolist()
    params = SamplingParams(temperature=0.0, max_tokens=steps + 1)
    out = []
    for mode, key in (("none", "seconds"), ("fixed", "draft_seconds")):
        eng = Engine(zoo.target, zoo.drafters[kind], speculation=mode, max_num_seqs=1)
        eng.add_request(prompt, params)
        times = []
        while eng.has_unfinished():
            eng.step()
            if eng.last_step["decode"] and not eng.last_step["prefill_tokens"]:
                times.append(eng.last_step[key])
        out.append(1e3 * statistics.median(times[2:] or times))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_timing_args(ap)
    ap.add_argument("--zoo", action="store_true", help="also time the micro zoo's target")
    args = ap.parse_args()
    timer = timer_from_args(args)
    table = Table(f"engine core budget (prompt {PROMPT}, {NEW} new tokens)")
    targets = [
        ("random Qwen3 L=6 d=256", random_target(6)),
        ("random Qwen3 L=12 d=256", random_target(12)),
    ]
    zoo = None
    if args.zoo:
        from dspark.zoo import load_zoo

        zoo = load_zoo(assistant=False)
        targets.insert(0, ("zoo target", zoo.target.float().eval()))
    for name, target in targets:
        for batch in (1, 4):
            bench_target(name, target, timer, table, batch)
    print(table.render())
    print(
        "speedup < 1 in a 'zero-draft round' row = the round's overhead over a plain step "
        "(budget: >= 0.91x, i.e. at most 1.1x the step)"
    )
    if zoo is not None:
        costs = Table("micro zoo: target decode step (ref) vs drafter propose of G tokens (dspark)")
        for kind in sorted(zoo.drafters):
            step, draft = engine_step_costs(zoo, kind)
            costs.add(
                f"zoo target step vs {kind} propose (G={zoo.drafters[kind].config.block_size})",
                step,
                draft,
            )
        print(costs.render())
        print("speedup = target step / drafter propose (the regime asks for >= 5x)")


if __name__ == "__main__":
    main()
