"""dspark.verify_attention as a Hugging Face transformers attention implementation.

After :func:`register_hf_attention`, any model that dispatches through transformers'
``AttentionInterface`` (Llama, Qwen2/3, Mistral, Gemma, ...) can run its verification forward
with a tree mask through dspark::

    dspark.integrations.hf_attention.register_hf_attention()      # name "dspark"
    model.set_attn_implementation("dspark")
    positions = dspark.tree_positions(parents, qo_indptr, kv_len)  # prefix_len + depth (RoPE)
    out = model(input_ids, cache=cache, position_ids=positions.view(B, q),
                dspark_parents=parents.view(B, q))

No dense mask is built: transformers skips mask creation for implementations without a mask
function, and the ancestor rule is evaluated inside the kernel from ``dspark_parents``
(``[B, q]`` or ``[q]`` int, local parent per query, -1 = sees only the cache; omitted = causal).
The cache (e.g. ``DynamicCache``) hands the layer contiguous ``[B, Hk, L, D]`` K/V, which dspark
reads in place as a paged cache of B pages of L slots. Every row of the batch must have the same
length (no padding mask is applied).
"""

from __future__ import annotations

from typing import Any

import torch

from dspark.ops.verify_attention import verify_attention

__all__ = ["dspark_attention_forward", "register_hf_attention"]


def dspark_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    dspark_parents: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function backed by :func:`dspark.verify_attention`.

    Parameters
    ----------
    module : torch.nn.Module
        The calling attention layer (unused; part of transformers' signature).
    query : Tensor (B, H, q, D)
    key, value : Tensor (B, Hk, L, D)
        The whole cache of this layer after the update, queries' own K/V last.
    attention_mask : Tensor, optional
        Must be None (a dense mask would defeat the purpose); pass the tree as
        ``dspark_parents``.
    dropout : float
        Must be 0 (inference only).
    scaling : float, optional
        Softmax scale (default ``1 / sqrt(D)``).
    sliding_window : int, optional
        transformers' window: a query sees the ``sliding_window`` latest positions including
        itself, i.e. ``window_left = sliding_window - 1``.
    softcap : float, optional
        Logit soft-cap (Gemma 2).
    dspark_parents : Tensor (B, q) or (q,) int, optional
        Local parent of each query (-1 = none among the queries); None = causal.

    Returns
    -------
    attn_output : Tensor (B, q, H, D)
    attn_weights : None
    """
    if attention_mask is not None:
        raise ValueError(
            "attention_mask: the dspark attention implementation takes the tree as "
            "dspark_parents=, not a dense mask (got a tensor of shape "
            f"{tuple(attention_mask.shape)})"
        )
    if dropout:
        raise ValueError(f"dropout: dspark attention is inference-only, got dropout={dropout}")
    b, h, q_len, d = query.shape
    kv_len = key.shape[2]
    dev = query.device
    q = query.transpose(1, 2).reshape(b * q_len, h, d)
    # [B, Hk, L, D] viewed as pages: page b = request b, page_size = L (strides, no copy).
    k_cache = key.transpose(1, 2)
    v_cache = value.transpose(1, 2)
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        k_cache, v_cache = k_cache.contiguous(), v_cache.contiguous()
    parents = None
    if dspark_parents is not None:
        p = dspark_parents.to(device=dev, dtype=torch.int32)
        if p.dim() == 1:
            p = p.expand(b, q_len)
        if tuple(p.shape) != (b, q_len):
            raise ValueError(
                f"dspark_parents: expected shape ({q_len},) or ({b}, {q_len}), got {tuple(p.shape)}"
            )
        parents = p.reshape(-1).contiguous()
    out = verify_attention(
        q,
        k_cache,
        v_cache,
        torch.arange(0, b * q_len + 1, q_len, dtype=torch.int32, device=dev),
        torch.arange(b, dtype=torch.int32, device=dev).view(b, 1),
        torch.full((b,), kv_len, dtype=torch.int32, device=dev),
        parents=parents,
        sm_scale=scaling,
        logits_soft_cap=softcap,
        window_left=-1 if sliding_window is None else int(sliding_window) - 1,
    )
    return out.view(b, q_len, h, d), None


def register_hf_attention(name: str = "dspark") -> str:
    """Register :func:`dspark_attention_forward` in transformers' ``AttentionInterface``.

    Parameters
    ----------
    name : str
        Implementation name to use with ``model.set_attn_implementation(name)`` or
        ``from_pretrained(..., attn_implementation=name)``.

    Returns
    -------
    str
        ``name``.

    Examples
    --------
    >>> from dspark.integrations.hf_attention import register_hf_attention
    >>> register_hf_attention()
    'dspark'
    """
    from transformers import AttentionInterface

    AttentionInterface.register(name, dspark_attention_forward)
    return name
