"""Plain (non-speculative) decoding on the target runner that speculative generation uses.

One target forward per token through the same runner :class:`SpeculativeGenerator` would pick
(dspark's paged engine core when the target supports it, else the Hugging Face cache runner),
each token sampled by ``verify_batch`` with zero drafts. Timing it next to a drafter measures
what speculation buys on the same runtime, not the difference between two runtimes; at
temperature 0 its output is the target's greedy decoding, which speculative generation must
reproduce token for token.
"""

from __future__ import annotations

from typing import Any

import torch

from dspark.generation.inputs import RequestParams, check_generate_inputs
from dspark.generation.paged_target import PagedTargetRunner
from dspark.generation.stats import GenerationOutput, assemble_output
from dspark.generation.target_runner import TargetRunner
from dspark.ops.verify import verify_batch

__all__ = ["plain_generate", "resolve_engine"]

ENGINES = ("auto", "paged", "hf")


def resolve_engine(target: Any, engine: str) -> str:
    """The runner ``engine`` means for ``target``: ``"paged"`` or ``"hf"`` (``"auto"``: paged
    when the target's head dim has a ``verify_attention`` kernel).

    Raises
    ------
    ValueError
        An unknown engine, or ``"paged"`` for a target it cannot run.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: expected 'auto', 'paged' or 'hf', got {engine!r}")
    ok = PagedTargetRunner.supports(target)
    if engine == "paged" and not ok:
        raise ValueError(
            "engine: 'paged' needs a target head dim of 64, 128 or 256 (verify_attention's "
            "kernels); use engine='hf' or 'auto'"
        )
    return "paged" if engine == "paged" or (engine == "auto" and ok) else "hf"


@torch.no_grad()
def plain_generate(
    target: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    engine: str = "auto",
    seed: int | None = None,
    **kwargs: Any,
) -> GenerationOutput:
    """Decode one token per target forward on the runner speculative generation uses.

    Parameters
    ----------
    target : PreTrainedModel
    input_ids, attention_mask : Tensor (B, L)
        Prompts (padding marked by ``attention_mask``), as for :func:`dspark.generate`.
    engine : {"auto", "paged", "hf"}
        As :class:`dspark.generation.SpeculativeGenerator`'s ``engine``.
    seed : int, optional
        Seeds sampling (same seed, same output).
    **kwargs
        ``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``stop_token_ids``,
        ``pad_token_id`` or ``sampling``, checked as by :func:`dspark.generate`.

    Returns
    -------
    GenerationOutput
        ``sequences`` and ``num_generated``; ``rounds`` is empty (there is nothing to verify).
    """
    kind = resolve_engine(target, engine)
    prm = check_generate_inputs(target, input_ids, attention_mask, **kwargs)
    if kind == "paged":
        longest = prm.input_ids.shape[1] + int(prm.max_new_tokens.max()) + 2
        runner: Any = PagedTargetRunner(target, [], max_len=longest)
    else:
        # TargetRunner captures at least one layer; the embedding output costs no compute.
        runner = TargetRunner(target, [-1])
    try:
        generated = _loop(prm, runner, seed)
    finally:
        if isinstance(runner, PagedTargetRunner):
            runner.close()
    return assemble_output(prm, generated, [])


def _loop(prm: RequestParams, runner: Any, seed: int | None) -> list[list[int]]:
    dev = prm.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
    vseed = torch.randint(0, 2**62, (prm.batch,), generator=gen, device=dev)
    voffset = torch.zeros(prm.batch, dtype=torch.int64, device=dev)
    pre = runner.prefill(prm.input_ids, prm.attention_mask)
    last = prm.attention_mask.long().cumsum(1).argmax(1)  # last real slot of each prompt
    rows = pre.logits[torch.arange(prm.batch, device=dev), last].float()
    active = torch.arange(prm.batch, device=dev)
    generated: list[list[int]] = [[] for _ in range(prm.batch)]
    no_drafts = torch.zeros(0, dtype=torch.int64, device=dev)
    while True:
        res = verify_batch(
            rows,
            no_drafts,
            torch.zeros(active.shape[0] + 1, dtype=torch.int32, device=dev),
            temperature=prm.temperature[active],
            top_k=prm.top_k[active],
            top_p=prm.top_p[active],
            seed=vseed,
            offset=voffset,
            max_depth=0,  # no drafts: each request samples its next token from its row
        )
        voffset = res.next_offset
        tokens = res.final_token.long()
        keep = []
        for req, tok in zip(active.tolist(), tokens.tolist(), strict=True):
            generated[req].append(tok)
            full = len(generated[req]) >= int(prm.max_new_tokens[req])
            keep.append(not (full or tok in prm.stop_sets[req]))
        keep_t = torch.tensor(keep, dtype=torch.bool, device=dev)
        if not bool(keep_t.any()):
            return generated
        if not bool(keep_t.all()):
            idx = torch.nonzero(keep_t)[:, 0]
            active, tokens, vseed, voffset = active[idx], tokens[idx], vseed[idx], voffset[idx]
            runner.select(idx)
        ones = torch.ones_like(active)
        fwd = runner.forward(tokens[:, None], ones)
        runner.accept(ones)
        rows = fwd.logits[:, 0].float()
