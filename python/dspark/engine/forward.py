"""The direct forward: a Hugging Face LM's own modules, called in dspark's loop.

``model(input_ids=..., ...)`` spends a decode step's time on more than the layers: the
``CausalLM`` and base-model wrappers (kwarg deprecation, output capturing, config merging,
output dataclasses), mask construction that the paged attention function ignores, and a RoPE
computation per call. For the families whose base-model forward is exactly "embed -> rotary ->
decoder layers -> norm" and whose head is ``lm_head`` (plus Gemma's final soft cap), this module
runs that loop itself with the model's own modules and weights:

- the embedding, every decoder layer and the final norm are the model's modules, called with the
  same arguments transformers passes them (``attention_mask=None``: ``"dspark_paged"`` reads the
  page tables, never a mask);
- RoPE ``cos``/``sin`` come from a table the model's own rotary module filled once for positions
  ``0..n-1`` (static RoPE types only; dynamic and LongRoPE scaling call the module every step);
- feature layers are read from the loop (no hooks), and the final norm and ``lm_head`` run only
  on the rows that need logits (both act row by row).

Anything else falls back to ``model(...)`` (:class:`dspark.engine.ModelRunner` decides).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from dspark.integrations.hf_compat import cache_keyword

__all__ = ["DIRECT_FAMILIES", "DirectForward"]

# model_type -> whether its rotary module takes a layer type (one table per layer type).
DIRECT_FAMILIES = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "qwen3": False,
    "gemma3_text": True,
}


def _static_rope(rotary: Any) -> bool:
    """Whether ``rotary``'s output depends on the positions only (no dynamic frequency update)."""
    kinds = getattr(rotary, "rope_type", None)
    if kinds is None:
        return False
    kinds = list(kinds.values()) if isinstance(kinds, dict) else [kinds]
    return all(isinstance(k, str) and "dynamic" not in k and k != "longrope" for k in kinds)


class DirectForward:
    """A supported model's forward over one packed paged step, without transformers' wrappers.

    Build with :meth:`build` (None when the model's family or structure is not supported).
    """

    def __init__(self, model: Any, typed_rope: bool) -> None:
        base = model.model
        cfg = base.config
        self.embed, self.norm, self.head = base.embed_tokens, base.norm, model.lm_head
        self.layers = list(base.layers)[: cfg.num_hidden_layers]
        self.rotary, self.typed_rope = base.rotary_emb, typed_rope
        types = getattr(cfg, "layer_types", None) or ["full_attention"] * len(self.layers)
        self.layer_types = list(types)[: len(self.layers)]
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.cache_kw = cache_keyword(self.layers[0])
        self.static_rope = _static_rope(self.rotary)
        self._tables: dict[str | None, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def build(cls, model: Any) -> DirectForward | None:
        """The direct forward of ``model``, or None if it must run through ``model(...)``."""
        cfg = getattr(model, "config", None)
        typed = DIRECT_FAMILIES.get(getattr(cfg, "model_type", ""))
        base = getattr(model, "model", None)
        parts = ("embed_tokens", "layers", "norm", "rotary_emb")
        if typed is None or base is None or not all(hasattr(base, p) for p in parts):
            return None
        if not isinstance(getattr(model, "lm_head", None), torch.nn.Linear):
            return None
        params = inspect.signature(base.rotary_emb.forward).parameters
        if typed != ("layer_type" in params) or not len(base.layers):
            return None
        return cls(model, typed)

    # --- RoPE -----------------------------------------------------------------------------
    def _rope_call(self, x: torch.Tensor, pos: torch.Tensor, kind: str | None) -> Any:
        return self.rotary(x, pos, kind) if self.typed_rope else self.rotary(x, pos)

    def _table(self, x: torch.Tensor, kind: str | None, size: int) -> tuple[Any, Any]:
        tab = self._tables.get(kind)
        if tab is None or tab[0].shape[0] < size or tab[0].dtype != x.dtype:
            n = max(256, 1 << (size - 1).bit_length())
            pos = torch.arange(n, device=x.device)[None]
            cos, sin = self._rope_call(x, pos, kind)
            tab = self._tables[kind] = (cos[0], sin[0])
        return tab

    def rope(
        self, x: torch.Tensor, positions: torch.Tensor, max_position: int
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer_type: (cos, sin)}`` of ``positions [T]``, each ``[1, T, D]``."""
        kinds = dict.fromkeys(self.layer_types)
        out = {}
        for kind in kinds:
            key = kind if self.typed_rope else None
            if self.static_rope:
                cos, sin = self._table(x, key, max_position + 1)
                out[kind] = (cos[positions][None], sin[positions][None])
            else:
                out[kind] = self._rope_call(x, positions[None], key)
            if not self.typed_rope:  # one rotary for every layer type
                return dict.fromkeys(kinds, out[kind])
        return out

    # --- the step -------------------------------------------------------------------------
    def __call__(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        step_cache: Any,
        rows: torch.Tensor | None,
        feature_layers: Sequence[int],
        max_position: int,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``[N, V]`` of ``rows`` (None = every row) and the ``[T, H]`` outputs of
        ``feature_layers`` (-1 = the embedding), for tokens ``input_ids [T]`` at ``positions``."""
        h = self.embed(input_ids[None])
        feats: dict[int, torch.Tensor] = {}
        want = set(feature_layers)
        if -1 in want:
            feats[-1] = h[0]
        pe = self.rope(h, positions, max_position)
        pos2d = positions[None]
        kwargs = {self.cache_kw: step_cache, "dspark_step": step_cache, "use_cache": True}
        for i, (layer, kind) in enumerate(zip(self.layers, self.layer_types, strict=True)):
            out = layer(
                h, attention_mask=None, position_embeddings=pe[kind], position_ids=pos2d, **kwargs
            )
            h = out[0] if isinstance(out, tuple) else out
            if i in want:
                feats[i] = h[0]
        h = h[0] if rows is None else h[0, rows]
        logits = self.head(self.norm(h))
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits, [feats[i] for i in feature_layers]
