"""The target side of speculative generation on dspark's paged engine core.

Same interface as :class:`dspark.generation.target_runner.TargetRunner` (prefill, forward,
forward_tree, accept, accept_mask, select, lengths, and the packed ``prefill_packed`` and
``forward_packed`` the generation loop uses), but the KV cache is
:class:`dspark.engine.PagedKVCache`: each request's rejected drafts are dropped by length (no
cropping, no compaction, no holes), steps are packed without padding, and the target computes
logits only for the rows verification reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dspark.engine import ModelRunner, StepRequest
from dspark.engine.runner import supported_head_dim
from dspark.generation.target_runner import PackedForward, TargetForward

__all__ = ["PagedTargetRunner"]


class PagedTargetRunner:
    """Runs a causal LM over ragged requests with per-request rollback, on pages.

    Parameters
    ----------
    target : PreTrainedModel
    feature_layers : sequence of int
        The drafter's feature layers.
    max_len : int
        Most slots any request will hold (prompt + new tokens + one round's drafts).
    page_size : int
    """

    def __init__(
        self, target: Any, feature_layers: Sequence[int], max_len: int, page_size: int = 16
    ) -> None:
        self.target, self.feature_layers = target, list(feature_layers)
        self.max_len, self.page_size = int(max_len), int(page_size)
        self.device = next(target.parameters()).device
        self.runner: ModelRunner | None = None
        self.rows: list[int] = []  # request id of each batch row
        self._pending: list[tuple[int, int]] = []  # (start, count) of the last forward per row

    @staticmethod
    def supports(target: Any) -> bool:
        """Whether the paged path can run ``target`` (else use ``TargetRunner``)."""
        return supported_head_dim(target)

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens each request has committed (= its next position), ``(B,)`` int64."""
        assert self.runner is not None
        cache = self.runner.cache
        return torch.tensor([cache.length(r) for r in self.rows], device=self.device)

    def close(self) -> None:
        if self.runner is not None:
            for r in self.runner.cache.requests:
                self.runner.cache.free(r)
            self.runner.close()

    @staticmethod
    def _features(out: Any) -> torch.Tensor:
        """The step's packed features ``[T, F]`` (``F = 0`` without feature layers)."""
        if out.features is not None:
            return out.features
        return out.logits.new_zeros(out.layout.num_tokens, 0)

    def _scatter(self, packed: torch.Tensor, counts: list[int], width: int) -> torch.Tensor:
        """Packed rows ``[sum(counts), X]`` -> zero-padded ``[B, width, X]`` (a view when every
        request has ``width`` rows)."""
        if all(c == width for c in counts):
            return packed.view(len(counts), width, packed.shape[-1])
        out = packed.new_zeros(len(counts), width, packed.shape[-1])
        ar = torch.arange(width, device=packed.device)
        c = torch.tensor(counts, device=packed.device)
        out[ar[None, :] < c[:, None]] = packed
        return out

    def _run(self, step: list[StepRequest]) -> Any:
        assert self.runner is not None
        cache = self.runner.cache
        self._pending = [
            (cache.length(s.req) if s.req in cache else 0, len(s.tokens)) for s in step
        ]
        return self.runner.run(step)

    def _ensure_runner(self, bsz: int) -> ModelRunner:
        num_pages = bsz * -(-self.max_len // self.page_size) + 1
        self.runner = ModelRunner(
            self.target,
            num_pages=num_pages,
            page_size=self.page_size,
            feature_layers=self.feature_layers,
        )
        self.rows = list(range(bsz))
        return self.runner

    @torch.no_grad()
    def prefill_packed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> PackedForward:
        """Run the prompts (real tokens where ``attention_mask``): logits ``[B, V]`` of each last
        real row, features at every real row in the input's ``[B, L, F]`` layout."""
        bsz = input_ids.shape[0]
        runner = self._ensure_runner(bsz)
        mask = attention_mask.bool()
        step = [StepRequest(b, input_ids[b][mask[b]], logits="last") for b in range(bsz)]
        out = runner.run(step)
        self._pending = []
        feats = self._features(out)
        full = feats.new_zeros(bsz, input_ids.shape[1], feats.shape[-1])
        full[mask] = feats
        return PackedForward(out.logits, full)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TargetForward:
        """:meth:`prefill_packed` with the logits in the input's ``[B, L, V]`` layout (zero
        except at each last real row)."""
        out = self.prefill_packed(input_ids, attention_mask)
        bsz, width = input_ids.shape
        last_col = attention_mask.long().cumsum(1).argmax(1)
        logits = out.logits.new_zeros(bsz, width, out.logits.shape[-1])
        logits[torch.arange(bsz, device=self.device), last_col] = out.logits
        return TargetForward(logits, out.features)

    @torch.no_grad()
    def forward_packed(self, tokens: torch.Tensor, counts: Sequence[int]) -> PackedForward:
        """Append the first ``counts[b]`` tokens of each row of ``tokens [B, n]`` and run them:
        logits ``[sum(counts), V]`` of those rows, packed (no ``[B, n, V]`` scatter), features
        ``[B, n, F]``."""
        c = [int(x) for x in counts]
        step = [StepRequest(r, tokens[i, : c[i]], logits="all") for i, r in enumerate(self.rows)]
        out = self._run(step)
        return PackedForward(out.logits, self._scatter(self._features(out), c, tokens.shape[1]))

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, counts: torch.Tensor) -> TargetForward:
        """Append ``tokens [B, n]`` (the first ``counts[b]`` of each row are real) and run them."""
        c = counts.tolist()
        out = self.forward_packed(tokens, c)
        return TargetForward(self._scatter(out.logits, c, tokens.shape[1]), out.features)

    @torch.no_grad()
    def forward_tree(
        self, tokens: torch.Tensor, depth: torch.Tensor, ancestors: torch.Tensor
    ) -> TargetForward:
        """Run ``[anchor, node_0, ...]`` per request with tree attention (one shared tree)."""
        anc = ancestors.bool().cpu().clone()
        anc.fill_diagonal_(False)
        idx = torch.arange(anc.shape[0])
        # A node's parent is its deepest proper ancestor (-1 for the anchor).
        parents = torch.where(anc.any(1), (anc * (idx[None, :] + 1)).amax(1) - 1, -1)
        del depth  # implied by the parents
        step = [
            StepRequest(r, tokens[i], parents=parents, logits="all")
            for i, r in enumerate(self.rows)
        ]
        out = self._run(step)
        counts = [tokens.shape[1]] * len(step)
        width = tokens.shape[1]
        return TargetForward(
            self._scatter(out.logits, counts, width),
            self._scatter(self._features(out), counts, width),
        )

    def accept(self, keep: torch.Tensor | Sequence[int]) -> None:
        """Keep the first ``keep[b]`` slots of the last forward per request; drop the rest."""
        cache = self.runner.cache  # type: ignore[union-attr]
        ks = keep.tolist() if isinstance(keep, torch.Tensor) else keep
        for r, (start, _n), k in zip(self.rows, self._pending, ks, strict=True):
            cache.truncate(r, start + int(k))
        self._pending = []

    def accept_mask(self, keep: torch.Tensor) -> None:
        """Keep the slots ``keep [B, n]`` of the last forward (in order); drop the rest."""
        cache = self.runner.cache  # type: ignore[union-attr]
        for r, (start, n), row in zip(self.rows, self._pending, keep.cpu(), strict=True):
            cache.keep(r, start, torch.nonzero(row[:n])[:, 0].tolist())
        self._pending = []

    def select(self, indices: torch.Tensor) -> None:
        """Keep only the batch rows ``indices``; the others' pages are freed."""
        cache = self.runner.cache  # type: ignore[union-attr]
        keep = [self.rows[i] for i in indices.tolist()]
        for r in set(self.rows) - set(keep):
            cache.free(r)
        self.rows = keep
