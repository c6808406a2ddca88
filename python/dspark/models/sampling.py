"""Draft-side sampling: logit processing, exponential-race sampling, and DSpark's ``markov_sample``.

The distribution a draft token was drawn from must be exactly the ``q`` given to the verifier,
so everything here works in fp32 and returns the processed logits it sampled from (the
reference samples from a bf16 softmax but verifies with an fp32 one; weak point 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from dspark.models.heads import ConfidenceHead, MarkovHead

__all__ = ["MarkovSample", "markov_sample", "process_logits", "sample_processed"]


def process_logits(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor | None = None,
    top_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p, per row; removed tokens get ``-inf``.

    Parameters
    ----------
    logits : Tensor (B, V)
    temperature : Tensor (B,) float32
        0 marks a greedy row: its logits are returned unscaled (only the argmax matters).
    top_k : Tensor (B,) int, optional
        0 disables. Ties at the cut are kept.
    top_p : Tensor (B,) float, optional
        1.0 disables. Keeps the smallest high-probability set with mass >= top_p, ties kept.

    Returns
    -------
    Tensor (B, V) float32
    """
    x = logits.float()
    t = temperature.float().to(x.device)
    x = torch.where((t > 0)[:, None], x / t.clamp_min(1e-30)[:, None], x)
    neg = torch.tensor(float("-inf"), device=x.device)
    if top_k is not None:
        k = top_k.to(device=x.device, dtype=torch.int64).clamp(0, x.shape[-1])
        if bool((k > 0).any()):
            srt = x.sort(dim=-1, descending=True).values
            kth = srt.gather(-1, (k.clamp_min(1) - 1)[:, None])
            x = torch.where((k[:, None] > 0) & (x < kth), neg, x)
    if top_p is not None:
        p = top_p.float().to(x.device)
        if bool((p < 1).any()):
            probs = torch.softmax(x, dim=-1)
            srt = probs.sort(dim=-1, descending=True).values
            # The first sorted index whose cumulative mass reaches p is the cut; keep ties with it.
            cut = (srt.cumsum(-1) < p[:, None]).sum(-1, keepdim=True).clamp_max(x.shape[-1] - 1)
            thresh = srt.gather(-1, cut)
            x = torch.where((p[:, None] < 1) & (probs < thresh), neg, x)
    return x


def sample_processed(
    processed: torch.Tensor,
    greedy: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    exp_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one token per row from ``softmax(processed)`` (argmax for greedy rows).

    Uses the exponential race ``argmax_v q(v) / E_v`` with ``E_v ~ Exp(1)``, which samples exactly
    from q without normalising it. ``exp_noise`` (B, V) injects the E draws (tests, references).
    Ties go to the lowest index.
    """
    if exp_noise is None:
        exp_noise = torch.empty_like(processed).exponential_(generator=generator)
    raced = (processed - exp_noise.to(processed.device).log()).argmax(-1)
    return torch.where(greedy, processed.argmax(-1), raced)


class MarkovSample(NamedTuple):
    """Output of :func:`markov_sample` (B requests, G steps).

    Attributes
    ----------
    tokens : Tensor (B, G) int64
    draft_logits : Tensor (B, G, V) float32
        Processed logits each token was drawn from (temperature, top-k, top-p applied; pass them to
        ``verify_batch(draft_logits=...)``). Greedy rows hold the unscaled biased logits.
    confidence : Tensor (B, G) float32 or None
        ``c_k`` from the confidence head given the sampled previous token.
    state : Tensor (B, r) or None
        Recurrent state after the last step (RNN head).
    """

    tokens: torch.Tensor
    draft_logits: torch.Tensor
    confidence: torch.Tensor | None
    state: torch.Tensor | None


def markov_sample(
    base_logits: torch.Tensor,
    hidden: torch.Tensor,
    anchor: torch.Tensor,
    head: MarkovHead,
    confidence_head: ConfidenceHead | None = None,
    *,
    temperature: torch.Tensor,
    top_k: torch.Tensor | None = None,
    top_p: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    exp_noise: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
) -> MarkovSample:
    """DSpark's sequential stage: sample ``x_k ~ softmax(proc(U_k + B_k(x_{k-1})))``, k = 1..G.

    This is the "draft step" that a fused kernel replaces (one launch per step instead of a bias
    GEMV, an add, a softmax and a sample).

    Parameters
    ----------
    base_logits : Tensor (B, G, V)
        ``U_k`` from the parallel backbone (LM head of ``h_k``).
    hidden : Tensor (B, G, d)
        ``h_k`` (used by the gated/RNN heads and the confidence head).
    anchor : Tensor (B,) int
        ``x_0``, the last committed token.
    head : MarkovHead
        Sequential head (``step_bias`` and ``features``).
    confidence_head : ConfidenceHead, optional
    temperature : Tensor (B,) float32
        0 = greedy drafting for that row.
    top_k, top_p : Tensor (B,), optional
        Applied after temperature (see :func:`process_logits`).
    generator : torch.Generator, optional
    exp_noise : Tensor (B, G, V), optional
        Exponential draws for the race (to reproduce a reference exactly).
    state : Tensor (B, r), optional
        Initial recurrent state (RNN head; default zeros).

    Returns
    -------
    MarkovSample

    Notes
    -----
    A fused ``draft_step`` op can take over for the vanilla Markov head: its inputs are
    ``head.w1.weight (V, r)``, ``head.w2.weight (V, r)``, the confidence head's
    ``proj.weight (1, d + r)`` and ``proj.bias``, and the per-request sampling parameters; the
    plain reference it must match is ``tests/reference/draft_step.py::draft_step_ref`` (same
    exponential draws -> same tokens). The gated and RNN heads stay on this loop.
    """
    bsz, steps, _ = base_logits.shape
    prev = anchor.to(device=base_logits.device, dtype=torch.long)
    greedy = temperature.to(base_logits.device) <= 0
    if state is None:
        state = head.init_state(bsz, hidden)
    tokens, logits, conf = [], [], []
    for k in range(steps):
        h_k = hidden[:, k]
        if confidence_head is not None:
            feats = head.features(prev) if confidence_head.uses_markov else None
            conf.append(torch.sigmoid(confidence_head(h_k, feats).float()))
        bias, state = head.step_bias(h_k, prev, state)
        proc = process_logits(base_logits[:, k].float() + bias.float(), temperature, top_k, top_p)
        noise = None if exp_noise is None else exp_noise[:, k]
        prev = sample_processed(proc, greedy, generator=generator, exp_noise=noise)
        tokens.append(prev)
        logits.append(proc)
    return MarkovSample(
        tokens=torch.stack(tokens, 1),
        draft_logits=torch.stack(logits, 1),
        confidence=torch.stack(conf, 1) if conf else None,
        state=state,
    )
