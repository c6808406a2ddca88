"""How a paged step plugs into an unmodified Hugging Face model.

transformers' attention layers call ``cache.update(key, value, layer_idx, ...)`` and then the
attention function registered under ``config._attn_implementation``, passing the model call's
extra keyword arguments through. dspark uses both hooks:

- :class:`StepCache` is the object passed as the model's cache for one step: its ``update``
  writes the step's new keys/values into the layer's page pools at the step's slots (in place,
  no concatenation) and hands the new tensors back unchanged;
- :func:`paged_attention_forward` (registered as ``"dspark_paged"``) ignores those tensors and
  runs :func:`dspark.verify_attention` over the pools with the step's packed layout
  (``qo_indptr``, page tables, lengths, tree parents).

An implementation name transformers has no mask function for makes it skip building any mask,
so no dense ``[q, kv]`` mask exists anywhere (the same route transformers' own continuous
batching takes). The batch is packed as one row ``[1, T]`` with per-token position ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dspark.engine.paged_cache import PagedKVCache
from dspark.ops.verify_attention import verify_attention

__all__ = ["ATTN_NAME", "StepCache", "StepLayout", "paged_attention_forward", "register"]

ATTN_NAME = "dspark_paged"


@dataclass
class StepLayout:
    """One packed forward: ``T`` new tokens of ``R`` requests (request ``r`` owns rows
    ``qo_indptr[r]:qo_indptr[r+1]``)."""

    input_ids: torch.Tensor  # [T] int64
    positions: torch.Tensor  # [T] int64 (RoPE positions)
    slot_mapping: torch.Tensor  # [T] int64 flat slot of each new token's K/V
    qo_indptr: torch.Tensor  # [R + 1] int32
    kv_len: torch.Tensor  # [R] int32 (prefix + new tokens)
    block_table: torch.Tensor  # [R, max_pages] int32
    parents: torch.Tensor | None  # [T] int32 local tree parents, None = causal
    max_qo_len: int
    max_kv_len: int
    qo_indptr_host: tuple[int, ...] = ()  # qo_indptr as host ints (no device read needed)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


class StepCache:
    """The cache object a model sees during one paged step (duck-types ``Cache.update``)."""

    is_compileable = False

    def __init__(self, cache: PagedKVCache, layout: StepLayout) -> None:
        self.cache, self.layout = cache, layout

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # key_states [1, Hk, T, D] -> [T, Hk, D] rows of the flat [P * S, Hk, D] pool
        kf, vf = self.cache.flat_layer(layer_idx)
        slots = self.layout.slot_mapping
        kf.index_copy_(0, slots, key_states[0].transpose(0, 1))
        vf.index_copy_(0, slots, value_states[0].transpose(0, 1))
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layout.max_kv_len


def paged_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    dspark_step: StepCache | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function over the paged cache; query ``[1, H, T, D]``."""
    if dspark_step is None:
        raise RuntimeError(
            f"attn_implementation {ATTN_NAME!r} runs only inside dspark.engine.ModelRunner"
        )
    lay = dspark_step.layout
    kp, vp = dspark_step.cache.layer(module.layer_idx)
    q = query[0].transpose(0, 1)  # [T, H, D], D contiguous
    out = verify_attention(
        q if q.is_contiguous() else q.contiguous(),
        kp,
        vp,
        lay.qo_indptr,
        lay.block_table,
        lay.kv_len,
        parents=lay.parents,
        sm_scale=scaling,
        logits_soft_cap=softcap,
        window_left=-1 if sliding_window is None else int(sliding_window) - 1,
        max_qo_len=lay.max_qo_len,
        max_kv_len=lay.max_kv_len,
        validate=module.layer_idx == 0,  # the layout is the same for every layer
    )
    return out.unsqueeze(0), None


_registered = False


def register() -> str:
    """Register :func:`paged_attention_forward` with transformers (idempotent)."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTN_NAME, paged_attention_forward)
        _registered = True
    return ATTN_NAME
