"""Drafter losses with the target distribution computed only where needed, in chunks.

The target's next-token distribution ``p_t`` is recomputed from stored final hidden states
through the frozen LM head, one chunk of anchors (or positions) at a time, under activation
checkpointing: the forward never holds more than ``chunk x G x V`` target/draft probabilities,
and the backward recomputes them chunk by chunk. (The reference materialises several fp32
``[N, G, V]`` tensors at once, ~2 GiB each at N=512 for Qwen3.)

Every loss returns *numerators* and the weight sum separately, so the trainer can normalise by
the weight sum of the whole global batch (exact across any number of processes and
accumulation steps).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["LossParts", "block_loss", "eagle3_loss"]


class LossParts(NamedTuple):
    """Loss numerators and statistics of one micro-batch.

    Attributes
    ----------
    total : Tensor ()
        Weighted sum of the combined loss (divide by the global ``weight``).
    weight : Tensor ()
        Sum of the loss weights (normaliser).
    terms : dict of str -> Tensor ()
        Weighted sums of each term (ce, tv, conf), detached.
    accept_sum, accept_count : Tensor (G,)
        Per-position sum / count of the estimated acceptance probability
        ``1 - TV(p_d, p_t)`` under teacher forcing.
    """

    total: torch.Tensor
    weight: torch.Tensor
    terms: dict[str, torch.Tensor]
    accept_sum: torch.Tensor
    accept_count: torch.Tensor


# Below this many (rows x vocabulary) elements per loss (64 MiB of fp32), a loss keeps whole
# tables instead of chunked recomputation: the micro zoo's V=4096 drafters train ~1/3 faster.
_SMALL_ELEMS = 1 << 24


def _target_logprobs(drafter: Any, rows: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(drafter.compute_logits(rows).float(), dim=-1)


def _block_chunk(drafter, logits, conf, rows, labels, w, alphas):
    """Weighted sums for one chunk: (ce, tv, conf) numerators and accept probabilities."""
    logp_d = torch.log_softmax(logits.float(), dim=-1)
    logp_t = _target_logprobs(drafter, rows)
    ce = -logp_d.gather(-1, labels[..., None])[..., 0]
    l1 = (logp_d.exp() - logp_t.exp()).abs().sum(-1)
    accept = (1.0 - 0.5 * l1.detach()).clamp(0.0, 1.0)
    parts = [(ce * w).sum(), (l1 * w).sum() if alphas[1] else l1.new_zeros(())]
    if conf is not None and alphas[2]:
        bce = F.binary_cross_entropy_with_logits(conf.float(), accept, reduction="none")
        parts.append((bce * w).sum())
    else:
        parts.append(l1.new_zeros(()))
    return (*parts, accept)


def _hidden_chunk(drafter, h, anchor, rows, labels, w, alphas):
    logits, markov, conf = drafter.block_logits(
        h, anchor, labels if drafter.kind == "dspark" else None
    )
    return _block_chunk(
        drafter, markov if markov is not None else logits, conf, rows, labels, w, alphas
    )


def block_loss(
    drafter: Any,
    out: Any,
    anchor_index: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    last_hidden: torch.Tensor,
    *,
    alphas: tuple[float, float, float] = (0.1, 0.9, 1.0),
    chunk: int = 64,
    input_ids: torch.Tensor | None = None,
) -> LossParts:
    """DSpark / DFlash loss: ``a_ce L_ce + a_tv L_tv + a_conf L_conf`` with position weights.

    Parameters
    ----------
    drafter : DFlashDrafter or DSparkDrafter
    out : BlockTrainOutput
        From ``drafter.forward_train``: with ``heads=False`` (only ``hidden``) the logits are
        computed here chunk by chunk, so no (N, G, V) tensor is ever whole; otherwise the given
        logits are used (DSpark: ``markov_logits`` and ``confidence_logits``).
    anchor_index : Tensor (N,) int
        Global anchor rows; the target distribution for label k is at row ``anchor + k``.
    labels, valid : Tensor (N, G)
        From :func:`dspark.models.block_targets` (valid is the contiguous supervised prefix).
    last_hidden : Tensor (T, d)
        Target final hidden states of the packed tokens.
    alphas : (a_ce, a_tv, a_conf)
        Reference defaults: DSpark (0.1, 0.9, 1.0); DFlash (1, 0, 0). "tv" is the full L1
        distance (range 0..2), as in the reference.
    chunk : int
        Anchors per chunk.
    input_ids : Tensor (T,), optional
        Packed tokens (needed with ``heads=False`` outputs, for the anchor tokens).

    Returns
    -------
    LossParts
    """
    from_hidden = out.logits is None
    logits = (
        out.hidden
        if from_hidden
        else (out.markov_logits if out.markov_logits is not None else out.logits)
    )
    conf = out.confidence_logits
    n, g = labels.shape
    anchor_tok = input_ids[anchor_index] if input_ids is not None else None
    if from_hidden and anchor_tok is None:
        raise ValueError("input_ids: needed when `out` holds only hidden states (heads=False)")
    pw = torch.tensor(drafter.config.position_weights(g), device=logits.device)
    w = valid.float() * pw[None, :]
    rows_idx = (anchor_index[:, None] + torch.arange(g, device=logits.device)[None, :]).clamp_max(
        last_hidden.shape[0] - 1
    )
    sums = torch.zeros(3, device=logits.device)
    acc_sum = torch.zeros(g, device=logits.device)
    args: tuple[Any, ...]
    for lo in range(0, n, chunk):
        sl = slice(lo, lo + chunk)
        rows = last_hidden[rows_idx[sl]]
        if from_hidden:
            assert anchor_tok is not None  # checked above
            fn, args = _hidden_chunk, (drafter, logits[sl], anchor_tok[sl], rows)
        else:
            c = conf[sl] if conf is not None else None
            fn, args = _block_chunk, (drafter, logits[sl], c, rows)
        args = (*args, labels[sl], w[sl], alphas)
        if torch.is_grad_enabled() and logits.requires_grad:
            res = checkpoint(fn, *args, use_reentrant=False)
        else:
            res = fn(*args)
        sums = sums + torch.stack(res[:3])
        acc_sum = acc_sum + (res[3] * valid[sl]).sum(0)
    total = alphas[0] * sums[0] + alphas[1] * sums[1] + alphas[2] * sums[2]
    terms = {"ce": sums[0].detach(), "tv": sums[1].detach(), "conf": sums[2].detach()}
    return LossParts(total, w.sum(), terms, acc_sum.detach(), valid.float().sum(0))


def _eagle_chunk(drafter, logits, rows, labels, m, from_hidden=False, rows_are_logp=False):
    if from_hidden:
        logits = drafter.compute_logits(logits)
    logq = torch.log_softmax(logits.float(), dim=-1)
    logp = rows if rows_are_logp else _target_logprobs(drafter, rows)
    p = logp.exp()
    soft_ce = -(p * logq).sum(-1)
    accept = torch.minimum(p, logq.detach().exp()).sum(-1)
    correct = (logq.detach().argmax(-1) == labels).float()
    return (soft_ce * m).sum(), accept, correct


def eagle3_loss(
    drafter: Any,
    out: Any,
    loss_mask: torch.Tensor,
    last_hidden: torch.Tensor,
    *,
    step_decay: float = 0.8,
    chunk: int = 256,
) -> LossParts:
    """Eagle3 soft-label cross-entropy over training-time-test steps.

    ``L = sum_s decay^s sum_t m_s(t) CE(p_target(. | t+s+1), q_s(. | t))``, normalised (by the
    trainer) by the number of supervised step-0 positions: unlike the reference, padding and
    prompt positions do not dilute the loss.

    Parameters
    ----------
    drafter : Eagle3Drafter
    out : Eagle3TrainOutput
        logits (S, T, V) (or, from ``heads=False``, hidden (S, T, d): the LM head is then applied
        per chunk), labels (S, T) at row ``t + 2 + s``, valid (S, T).
    loss_mask : Tensor (T,) bool
    last_hidden : Tensor (T, d)
    """
    steps, total = out.labels.shape
    from_hidden = out.logits is None
    src = out.hidden if from_hidden else out.logits
    dev = src.device
    ar = torch.arange(total, device=dev)
    num = torch.zeros((), device=dev)
    acc_sum = torch.zeros(steps, device=dev)
    acc_cnt = torch.zeros(steps, device=dev)
    correct_sum = torch.zeros((), device=dev)
    weight = None
    # Every step reads the target distribution at (shifted) rows of the same T positions: when
    # the (T, V) table is small, compute it once instead of once per step and chunk, and skip the
    # activation checkpointing (its recompute costs a head pass per row) while all steps' (T, V)
    # probabilities fit the same budget. Large vocabularies keep the chunked, checkpointed path.
    vocab = drafter.config.vocab_size
    small = steps * total * vocab <= _SMALL_ELEMS
    logp_all = _target_logprobs(drafter, last_hidden) if small else None
    for s in range(steps):
        lab_idx = (ar + 2 + s).clamp_max(total - 1)
        m = (out.valid[s] & loss_mask[lab_idx]).float()
        if weight is None:
            weight = m.sum()
        row_idx = lab_idx - 1
        for lo in range(0, total, chunk):
            sl = slice(lo, lo + chunk)
            rows = (logp_all if logp_all is not None else last_hidden)[row_idx[sl]]
            args = (drafter, src[s, sl], rows, out.labels[s, sl], m[sl], from_hidden, small)
            if torch.is_grad_enabled() and src.requires_grad and not small:
                ce, acc, cor = checkpoint(_eagle_chunk, *args, use_reentrant=False)
            else:
                ce, acc, cor = _eagle_chunk(*args)
            num = num + step_decay**s * ce
            acc_sum[s] += (acc * m[sl]).sum()
            if s == 0:
                correct_sum += (cor * m[sl]).sum()
        acc_cnt[s] = m.sum()
    assert weight is not None
    terms = {"ce": num.detach(), "acc0": correct_sum}
    return LossParts(num, weight, terms, acc_sum, acc_cnt)
