"""The target side of speculative generation: a Hugging Face model with a KV cache that can roll
back a different number of tokens per request.

``DynamicCache`` has one length for the whole batch. Requests that accept different numbers of
drafts therefore leave "holes": cache slots that a 2-D attention mask hides and that position ids
skip (RoPE is applied with each request's real positions). After each round the tail that is
invalid for every request is cropped (``cache.crop(-n)``), and when holes make the cache much
longer than the longest request it is compacted by a per-request gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from dspark.integrations.hf_compat import cache_kwargs
from dspark.models.features import FeatureCapture

__all__ = ["PackedForward", "TargetForward", "TargetRunner"]


class TargetForward(NamedTuple):
    """Logits ``[B, n, V]`` and drafter features ``[B, n, F]`` (feature layers) of new rows."""

    logits: torch.Tensor
    features: torch.Tensor


class PackedForward(NamedTuple):
    """Logits ``[N, V]`` of only the rows verification reads, packed request by request (the
    real rows of a forward, or each prompt's last real row after a prefill), and drafter
    features ``[B, n, F]`` of every new row (zero rows where a request had fewer)."""

    logits: torch.Tensor
    features: torch.Tensor


class TargetRunner:
    """Runs a causal LM over ragged requests with per-request rollback.

    Attributes
    ----------
    lengths : Tensor (B,) int64
        Tokens each request has committed to the cache (= the next position id).
    slot_valid : Tensor (B, S) bool
        Which cache slots hold committed tokens of each request.
    """

    def __init__(
        self,
        target: Any,
        feature_layers: Sequence[int],
        compact_ratio: float = 2.0,
        compact_slack: int = 64,
    ) -> None:
        self.target = target
        self.capture = FeatureCapture(target, feature_layers)
        self.device = next(target.parameters()).device
        from transformers import DynamicCache  # optional dependency: imported on use

        self.cache = DynamicCache(config=target.config)
        self.compact_ratio, self.compact_slack = compact_ratio, compact_slack
        self.lengths = torch.zeros(0, dtype=torch.int64, device=self.device)
        self.slot_valid = torch.zeros(0, 0, dtype=torch.bool, device=self.device)
        self._pending = 0  # slots appended by the last forward and not yet resolved by accept()
        cfg = getattr(target.config, "text_config", None) or target.config
        sliding = "sliding_attention" in (getattr(cfg, "layer_types", None) or [])
        # Sliding-window caches evict old slots and cannot roll back past the window.
        self.window = (
            int(cfg.sliding_window) if sliding and getattr(cfg, "sliding_window", None) else None
        )

    def _check_window(self, n: int) -> None:
        if self.window is not None and self.slot_valid.shape[1] + n > self.window:
            raise ValueError(
                f"target: its sliding-window layers (window {self.window}) cannot roll back once "
                f"the cache exceeds the window; this generation needs "
                f"{self.slot_valid.shape[1] + n} slots (not supported yet)"
            )

    def _all_dynamic(self) -> bool:
        layers = getattr(self.cache, "layers", [])
        return all(type(layer).__name__ == "DynamicLayer" for layer in layers)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, counts: torch.Tensor) -> TargetForward:
        """Append ``tokens [B, n]`` (the first ``counts[b]`` of each row are real) and run them.

        Every new slot stays provisionally visible to later rows of the same call (causal
        attention), then :meth:`accept` decides which slots remain.
        """
        if self._pending:
            raise RuntimeError("TargetRunner.forward: call accept() after each forward")
        _bsz, n = tokens.shape
        self._check_window(n)
        ar = torch.arange(n, device=self.device)
        new_valid = ar[None, :] < counts[:, None]
        # Padding query rows reuse each request's last real position; their outputs are ignored.
        positions = self.lengths[:, None] + torch.minimum(
            ar[None, :], (counts - 1).clamp_min(0)[:, None]
        )
        mask = torch.cat([self.slot_valid, new_valid], dim=1).long()
        with self.capture:
            out = self.target(
                input_ids=tokens,
                attention_mask=mask,
                position_ids=positions,
                **cache_kwargs(self.target, self.cache),
                use_cache=True,
            )
        self.slot_valid = torch.cat([self.slot_valid, new_valid], dim=1)
        self._pending = n
        return TargetForward(out.logits, self.capture.features())

    @torch.no_grad()
    def forward_packed(self, tokens: torch.Tensor, counts: Sequence[int]) -> PackedForward:
        """:meth:`forward` with ``counts`` on the host; logits of the real rows only, packed."""
        c = torch.tensor(list(counts), device=self.device)
        out = self.forward(tokens, c)
        real = torch.arange(tokens.shape[1], device=self.device)[None, :] < c[:, None]
        return PackedForward(out.logits[real], out.features)

    @torch.no_grad()
    def prefill_packed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> PackedForward:
        """:meth:`prefill`; logits only at each prompt's last real row (``[B, V]``)."""
        out = self.prefill(input_ids, attention_mask)
        last = attention_mask.long().cumsum(1).argmax(1)
        rows = out.logits[torch.arange(input_ids.shape[0], device=self.device), last]
        return PackedForward(rows, out.features)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TargetForward:
        """Run the prompts; ``attention_mask`` marks real tokens (left padding or any holes)."""
        self.lengths = torch.zeros(input_ids.shape[0], dtype=torch.int64, device=self.device)
        self.slot_valid = torch.zeros(input_ids.shape[0], 0, dtype=torch.bool, device=self.device)
        self._check_window(input_ids.shape[1])
        mask = attention_mask.bool()
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)
        with self.capture:
            out = self.target(
                input_ids=input_ids,
                attention_mask=mask.long(),
                position_ids=positions,
                **cache_kwargs(self.target, self.cache),
                use_cache=True,
            )
        self.slot_valid = mask.clone()
        self.lengths = mask.sum(1)
        return TargetForward(out.logits, self.capture.features())

    @torch.no_grad()
    def forward_tree(
        self, tokens: torch.Tensor, depth: torch.Tensor, ancestors: torch.Tensor
    ) -> TargetForward:
        """Run ``[anchor, node_0, ...]`` per request with tree attention (one shared tree).

        ``depth (1 + N,)`` gives positions (``lengths + depth``), ``ancestors (1 + N, 1 + N)``
        which new rows each row sees (itself and its ancestors), passed as a custom 4-D mask.
        """
        if self._pending:
            raise RuntimeError("TargetRunner.forward_tree: call accept() after each forward")
        bsz, n = tokens.shape
        self._check_window(n)
        old = self.slot_valid[:, None, :].expand(bsz, n, -1)
        new = ancestors.to(self.device)[None].expand(bsz, -1, -1)
        visible = torch.cat([old, new], dim=2)[:, None]
        dtype = next(self.target.parameters()).dtype
        mask = torch.zeros(visible.shape, dtype=dtype, device=self.device)
        mask.masked_fill_(~visible, torch.finfo(dtype).min)
        positions = self.lengths[:, None] + depth.to(self.device)[None, :]
        with self.capture:
            out = self.target(
                input_ids=tokens,
                attention_mask=mask,
                position_ids=positions,
                **cache_kwargs(self.target, self.cache),
                use_cache=True,
            )
        self.slot_valid = torch.cat([self.slot_valid, torch.ones_like(tokens, dtype=torch.bool)], 1)
        self._pending = n
        return TargetForward(out.logits, self.capture.features())

    def accept(self, keep: torch.Tensor | Sequence[int]) -> None:
        """Keep the first ``keep[b]`` slots of the last forward per request; drop the rest."""
        keep = torch.as_tensor(keep, device=self.device)
        ar = torch.arange(self._pending, device=self.device)
        self.accept_mask(ar[None, :] < keep[:, None])

    def accept_mask(self, keep: torch.Tensor) -> None:
        """Keep the slots ``keep [B, n]`` of the last forward (e.g. an accepted tree path, in
        sequence order); drop the rest."""
        n, self._pending = self._pending, 0
        self.slot_valid[:, -n:] &= keep
        self.lengths = self.lengths + keep.sum(1)
        # Crop the tail that no request uses (the exact rollback when the batch has one request).
        used = self.slot_valid.any(0)
        tail = int((~used).flip(0).long().cumprod(0).sum())
        if tail:
            self.cache.crop(-tail)
            self.slot_valid = self.slot_valid[:, : self.slot_valid.shape[1] - tail]
        longest = int(self.lengths.max()) if self.lengths.numel() else 0
        if (
            self.slot_valid.shape[1] > self.compact_ratio * longest + self.compact_slack
            and self._all_dynamic()
        ):
            self._compact()

    def _compact(self) -> None:
        """Move each request's valid slots to the front (a stable per-request gather)."""
        valid = self.slot_valid
        width = int(valid.sum(1).max())
        # Stable order: valid slots first, in their original order.
        order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices[:, :width]
        for layer in self.cache.layers:
            idx = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys = layer.keys.gather(2, idx)
            layer.values = layer.values.gather(2, idx)
        self.slot_valid = valid.gather(1, order)

    def select(self, indices: torch.Tensor) -> None:
        """Keep only the requests ``indices`` (finished requests leave the batch)."""
        self.cache.batch_select_indices(indices)
        self.lengths = self.lengths[indices]
        self.slot_valid = self.slot_valid[indices]
