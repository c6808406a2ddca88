"""Decoder building blocks shared by the drafters (Qwen3/Llama-style, Gemma norm flavour).

Attention here takes explicit key/value tensors and a boolean visibility mask built from index
tensors by the caller, so one module serves three layouts: KV injection (context rows before the
block rows, DFlash/DSpark), a ragged per-request cache at inference, and packed training batches.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dspark.models.config import DrafterConfig

__all__ = ["Attention", "DraftBlock", "RMSNorm", "SwiGLU", "apply_rope", "attend", "rope_cos_sin"]


class RMSNorm(nn.Module):
    """RMSNorm in fp32; ``gemma=True`` scales by ``1 + weight`` (weight initialised to 0)."""

    def __init__(self, dim: int, eps: float, gemma: bool = False) -> None:
        super().__init__()
        self.gemma = gemma
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim) if gemma else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        w = self.weight.float() + 1.0 if self.gemma else self.weight.float()
        return (w * x).to(dtype)


class SwiGLU(nn.Module):
    """Gated MLP ``down(act(gate(x)) * up(x))`` as in Qwen3, Llama and Gemma."""

    def __init__(self, dim: int, inner: int, act: str) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=False)
        self.up_proj = nn.Linear(dim, inner, bias=False)
        self.down_proj = nn.Linear(inner, dim, bias=False)
        from transformers.activations import ACT2FN  # optional dependency: imported on use

        self.act = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def rope_cos_sin(
    rotary: nn.Module, x: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[B, S, D]`` from the target's own rotary module (so RoPE scaling variants match).

    Gemma3's rotary module also takes a layer type; drafter layers are full attention.
    """
    try:
        return rotary(x, positions)
    except TypeError:
        types = getattr(rotary, "rope_type", None)
        if isinstance(types, dict) and "full_attention" not in types:
            return rotary(x, positions, next(iter(types)))
        return rotary(x, positions, "full_attention")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, H, S, D]`` with ``cos, sin [B, S, D]`` (Hugging Face half-rotation layout)."""
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention with a boolean visibility mask.

    Parameters
    ----------
    q : Tensor (B, H, Q, D)
    k, v : Tensor (B, Hk, K, D)
        GQA: ``H`` must be a multiple of ``Hk``.
    visible : Tensor (B or 1, 1, Q, K) bool
        True where query q may see key k; every query row must see at least one key.
    scale : float

    Returns
    -------
    Tensor (B, Q, H * D)
    """
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=scale)
    return out.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """GQA attention whose keys and values may come from extra (injected or cached) rows.

    ``in_dim`` is the input width of q/k/v (Eagle3 feeds ``2 d``); the output width is ``d``.
    """

    def __init__(self, cfg: DrafterConfig, in_dim: int | None = None) -> None:
        super().__init__()
        d, h, hk, hd = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        in_dim = in_dim or d
        self.heads, self.kv_heads, self.head_dim = h, hk, hd
        self.scale = hd**-0.5
        self.q_proj = nn.Linear(in_dim, h * hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(in_dim, hk * hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(in_dim, hk * hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(h * hd, d, bias=False)
        self.q_norm = (
            RMSNorm(hd, cfg.rms_norm_eps, cfg.gemma_norm) if cfg.qk_norm else nn.Identity()
        )
        self.k_norm = (
            RMSNorm(hd, cfg.rms_norm_eps, cfg.gemma_norm) if cfg.qk_norm else nn.Identity()
        )

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        return x.unflatten(-1, (heads, self.head_dim)).transpose(
            1, 2
        )  # [B, S, H*D] -> [B, H, S, D]

    def project_kv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (normed, rotated) and values ``[B, Hk, S, D]`` of rows ``x [B, S, in_dim]``."""
        k = apply_rope(self.k_norm(self._split(self.k_proj(x), self.kv_heads)), cos, sin)
        return k, self._split(self.v_proj(x), self.kv_heads)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        visible: torch.Tensor,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend from rows ``x [B, Q, in_dim]`` to ``extra_kv`` rows followed by ``x``'s own rows.

        Returns the output ``[B, Q, d]`` and ``x``'s own (k, v), which callers may cache.
        """
        q = apply_rope(self.q_norm(self._split(self.q_proj(x), self.heads)), cos, sin)
        k_own, v_own = self.project_kv(x, cos, sin)
        k, v = k_own, v_own
        if extra_kv is not None:
            k = torch.cat([extra_kv[0], k_own], dim=2)
            v = torch.cat([extra_kv[1], v_own], dim=2)
        return self.o_proj(attend(q, k, v, visible, self.scale)), (k_own, v_own)


class DraftBlock(nn.Module):
    """Pre-norm decoder block (attention + gated MLP) with context KV injection.

    Context rows ``h_ctx`` are projected by this layer's own ``k_proj``/``v_proj`` (each layer
    injects the same ``H_ctx``; it is never updated between layers).
    """

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__()
        d, eps, g = cfg.hidden_size, cfg.rms_norm_eps, cfg.gemma_norm
        self.input_layernorm = RMSNorm(d, eps, g)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(d, eps, g)
        self.mlp = SwiGLU(d, cfg.intermediate_size, cfg.hidden_act)

    def context_kv(
        self, h_ctx: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Injected keys/values ``[B, Hk, C, D]`` of context features ``h_ctx [B, C, d]``."""
        return self.self_attn.project_kv(h_ctx, cos, sin)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        visible: torch.Tensor,
        ctx_kv: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        a, _ = self.self_attn(self.input_layernorm(x), cos, sin, visible, ctx_kv)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Normal(0, std) linear/embedding weights, zero biases (norm weights keep their init)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            bias = getattr(m, "bias", None)
            if bias is not None:
                nn.init.zeros_(bias)


def shared_target_parts(target: Any) -> tuple[nn.Embedding, nn.Linear, nn.Module]:
    """(input embedding, LM head, rotary module) of a Hugging Face causal LM.

    Typed as the common case: some targets scale their embedding in a subclass or cap their
    logits outside the head, which the callers handle.
    """
    emb, head = target.get_input_embeddings(), target.get_output_embeddings()
    base = getattr(target, "model", None) or target.get_decoder()
    rotary = getattr(base, "rotary_emb", None)
    if emb is None or head is None or rotary is None:
        raise TypeError(
            f"target: expected a Hugging Face decoder-only causal LM with rotary embeddings, got "
            f"{type(target).__name__}"
        )
    return emb, head, rotary
