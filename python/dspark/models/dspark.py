"""DSpark: the DFlash backbone plus a light sequential (Markov) head and a confidence head.

The backbone drafts a block of G positions in one parallel pass (:mod:`dspark.models.dflash`);
the sequential head adds a low-rank bias from the previous drafted token to each position's
logits, and the confidence head scores each position for the load-aware scheduler. At inference
the vanilla Markov head runs through the fused native :func:`dspark.draft_step`.
"""

from __future__ import annotations

import torch

from dspark.models.base import Proposal
from dspark.models.config import DrafterConfig
from dspark.models.dflash import DFlashDrafter
from dspark.models.heads import ConfidenceHead, MarkovHead, build_head
from dspark.models.sampling import markov_sample
from dspark.ops.draft_step import draft_step

__all__ = ["DSparkDrafter"]


class DSparkDrafter(DFlashDrafter):
    """DSpark: the DFlash backbone plus a sequential head and a confidence head."""

    kind = "dspark"

    def _build_heads(self, config: DrafterConfig) -> None:
        self.head = build_head(config)
        self.confidence = ConfidenceHead(config) if config.confidence_head else None

    def _sample(self, h, anchor, temperature, top_k, top_p, generator) -> Proposal:
        if self._can_fuse(top_k, top_p):
            return self._sample_fused(h, anchor, temperature, generator)
        out = markov_sample(
            self.compute_logits(h),
            h,
            anchor,
            self.head,
            self.confidence,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
        return Proposal(out.tokens, out.draft_logits, out.confidence)

    def _can_fuse(self, top_k, top_p) -> bool:
        """The fused native draft step covers the vanilla Markov head without top-k/top-p."""
        conf = self.confidence
        return (
            type(self.head) is MarkovHead
            and not torch.is_grad_enabled()
            and (top_k is None or not bool((top_k > 0).any()))
            and (top_p is None or not bool((top_p < 1).any()))
            and (conf is None or conf.uses_markov)
        )

    def _sample_fused(self, h, anchor, temperature, generator) -> Proposal:
        conf = self.confidence
        out = draft_step(
            self.compute_logits(h),
            self.head.w1.weight,
            self.head.w2.weight,
            anchor,
            temperature=temperature.float(),
            generator=generator,
            hidden=h if conf is not None else None,
            conf_weight=conf.proj.weight.reshape(-1).float() if conf is not None else None,
            conf_bias=float(conf.proj.bias) if conf is not None else 0.0,
        )
        return Proposal(out.tokens.long(), out.draft_logits, out.confidence)

    def _train_heads(self, h, logits, anchor, teacher_tokens):
        if teacher_tokens is None:
            raise ValueError(
                "teacher_tokens: DSpark's training forward needs the (N, G) teacher tokens"
            )
        if teacher_tokens.shape != logits.shape[:2]:
            raise ValueError(
                f"teacher_tokens: expected shape {tuple(logits.shape[:2])}, got "
                f"{tuple(teacher_tokens.shape)}"
            )
        prev = torch.cat([anchor[:, None], teacher_tokens[:, :-1]], dim=1).long()
        markov = logits + self.head.block_bias(h, prev).to(logits.dtype)
        conf = None
        if self.confidence is not None:
            feats = self.head.features(prev) if self.confidence.uses_markov else None
            conf = self.confidence(h, feats)
        return markov, conf
