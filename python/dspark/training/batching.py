"""Data order, anchor sampling and packing: all deterministic functions of (seed, step, sample).

Nothing depends on the number of processes: the samples of optimizer step k and the anchors
drawn for each of them are the same whether one or many processes train, which is what makes
resuming with a different world size exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["PackedBatch", "pack", "sample_anchors", "step_samples", "steps_per_epoch"]


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Full global batches per epoch (the remainder is dropped, as in the reference)."""
    n = num_samples // global_batch
    if n < 1:
        raise ValueError(
            f"global_batch: {global_batch} is larger than the dataset ({num_samples} samples)"
        )
    return n


def step_samples(num_samples: int, global_batch: int, seed: int, step: int) -> list[int]:
    """Sample indices of optimizer step ``step`` (a fresh permutation per epoch)."""
    spe = steps_per_epoch(num_samples, global_batch)
    epoch, k = divmod(step, spe)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(num_samples, generator=g)
    return perm[k * global_batch : (k + 1) * global_batch].tolist()


def sample_anchors(
    loss_mask: torch.Tensor, num_anchors: int, seed: int, step: int, sample: int
) -> torch.Tensor:
    """Up to ``num_anchors`` anchor positions, uniform without replacement, ascending.

    A position p is a candidate iff ``loss_mask[p]`` and ``loss_mask[p + 1]`` (the anchor and its
    first label are assistant text), as in the reference.
    """
    m = loss_mask.bool()
    cand = torch.nonzero(m[:-1] & m[1:]).flatten()
    if cand.numel() <= num_anchors:
        return cand
    g = torch.Generator().manual_seed(hash((seed, step, sample)) & 0x7FFF_FFFF_FFFF)
    pick = torch.randperm(cand.numel(), generator=g)[:num_anchors]
    return cand[pick].sort().values


@dataclass
class PackedBatch:
    """Sequences concatenated along one axis (no padding) with index-based boundaries.

    Attributes
    ----------
    input_ids : (T,) int64;  loss_mask : (T,) bool
    features : (T, F);  last_hidden : (T, d)
    cu_seqlens : (S + 1,) int64
    anchor_index : (N,) int64, global rows of the anchors
    num_tokens : int
    """

    input_ids: torch.Tensor
    loss_mask: torch.Tensor
    features: torch.Tensor
    last_hidden: torch.Tensor
    cu_seqlens: torch.Tensor
    anchor_index: torch.Tensor
    num_tokens: int

    def to(self, device: torch.device, dtype: torch.dtype) -> PackedBatch:
        return PackedBatch(
            self.input_ids.to(device),
            self.loss_mask.to(device),
            self.features.to(device, dtype),
            self.last_hidden.to(device, dtype),
            self.cu_seqlens.to(device),
            self.anchor_index.to(device),
            self.num_tokens,
        )


def pack(
    samples: Sequence[dict[str, torch.Tensor]], anchors: Sequence[torch.Tensor]
) -> PackedBatch:
    """Concatenate samples (dicts from a cache or online source) and offset their anchors."""
    lens = torch.tensor([s["input_ids"].shape[0] for s in samples])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)])
    anchor_index = torch.cat([a + int(cu[i]) for i, a in enumerate(anchors)]).long()
    return PackedBatch(
        torch.cat([s["input_ids"] for s in samples]),
        torch.cat([s["loss_mask"] for s in samples]),
        torch.cat([s["features"] for s in samples]),
        torch.cat([s["last_hidden"] for s in samples]),
        cu,
        anchor_index,
        int(lens.sum()),
    )
