"""Plain reference for DSpark's draft step (the sequential Markov stage), loop by loop.

``draft_step_ref`` is what a fused draft-step op must compute: for each request and step,
``bias = W1[prev] @ W2`` (spec notation, ``W2 = w2_weight.T``), add it to the base logits, apply
temperature / top-k / top-p, draw with the exponential race ``argmax_v q(v) / E_v`` from the given
``E`` (greedy rows: argmax), and evaluate the confidence head on ``[h_k ; W1[prev]]``.
Float64, per-element Python loops where it matters: obvious, not fast.
"""

from __future__ import annotations

import math

import torch


def process_row_ref(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """Processed logits of one row (float64); removed tokens are -inf; ties at cuts are kept."""
    x = logits.double().clone()
    if temperature > 0:
        x = x / temperature
    if top_k > 0:
        kth = sorted(x.tolist(), reverse=True)[min(top_k, x.numel()) - 1]
        x = torch.where(x < kth, torch.tensor(-math.inf, dtype=x.dtype), x)
    if top_p < 1:
        p = torch.softmax(x, dim=0)
        vals = sorted(p.tolist(), reverse=True)
        mass, cut = 0.0, vals[-1]
        for v in vals:
            mass += v
            if mass >= top_p:
                cut = v
                break
        x = torch.where(p < cut, torch.tensor(-math.inf, dtype=x.dtype), x)
    return x


def draft_step_ref(
    base_logits: torch.Tensor,
    hidden: torch.Tensor,
    anchor: torch.Tensor,
    w1: torch.Tensor,
    w2_weight: torch.Tensor,
    *,
    temperature: list[float],
    top_k: list[int],
    top_p: list[float],
    exp_noise: torch.Tensor,
    conf_weight: torch.Tensor | None = None,
    conf_bias: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Reference DSpark draft step for B requests and G steps (vanilla Markov head).

    Parameters
    ----------
    base_logits : (B, G, V); hidden : (B, G, d); anchor : (B,)
    w1 : (V, r) embedding table; w2_weight : (V, r) (``nn.Linear(r, V)`` weight)
    temperature, top_k, top_p : per request
    exp_noise : (B, G, V) Exp(1) draws for the race
    conf_weight : (d + r,), optional; conf_bias : float

    Returns
    -------
    tokens (B, G) int64, processed logits (B, G, V) float64, confidence (B, G) float64 or None
    """
    bsz, steps, vocab = base_logits.shape
    tokens = torch.zeros(bsz, steps, dtype=torch.int64)
    logits = torch.zeros(bsz, steps, vocab, dtype=torch.float64)
    conf = torch.zeros(bsz, steps, dtype=torch.float64) if conf_weight is not None else None
    for b in range(bsz):
        prev = int(anchor[b])
        for k in range(steps):
            e = w1[prev].double()
            if conf is not None:
                feat = torch.cat([hidden[b, k].double(), e])
                conf[b, k] = 1.0 / (
                    1.0 + math.exp(-(float(feat @ conf_weight.double()) + conf_bias))
                )
            bias = torch.zeros(vocab, dtype=torch.float64)
            for v in range(vocab):
                bias[v] = float(e @ w2_weight[v].double())
            row = process_row_ref(
                base_logits[b, k].double() + bias, temperature[b], top_k[b], top_p[b]
            )
            logits[b, k] = row
            if temperature[b] <= 0:
                prev = int(torch.argmax(row))
            else:
                race = row - exp_noise[b, k].double().log()
                prev = int(torch.argmax(race))
            tokens[b, k] = prev
    return tokens, logits, conf
