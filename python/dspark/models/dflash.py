"""DFlash: the parallel block drafter with context KV injection (DSpark builds on it).

Block layout (docs/algorithms.md section 2.3): the anchor itself is the first prediction slot,
so G inputs ``[anchor, MASK x (G - 1)]`` give G drafts in one pass. Block rows attend
bidirectionally to each other and to the injected context ``H_ctx = RMSNorm(W_c [H(l1); ...])``
of every position strictly before the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from dspark.models.base import Drafter, Proposal
from dspark.models.config import DrafterConfig
from dspark.models.kv_cache import RaggedKVCache
from dspark.models.layers import DraftBlock, RMSNorm, rope_cos_sin
from dspark.models.sampling import process_logits, sample_processed

__all__ = ["BlockTrainOutput", "DFlashDrafter", "block_targets"]


@dataclass
class BlockState:
    """Drafting state: the ragged cache of projected context keys/values (one per position)."""

    cache: RaggedKVCache


class BlockTrainOutput(NamedTuple):
    """Training forward of DFlash/DSpark for N anchor blocks of G positions.

    Attributes
    ----------
    hidden : Tensor (N, G, d)
        ``h_k`` after the final norm.
    logits : Tensor (N, G, V)
        Base logits ``U_k`` (DFlash's prediction).
    markov_logits : Tensor (N, G, V) or None
        DSpark: ``U_k + B_k`` given the teacher tokens.
    confidence_logits : Tensor (N, G) or None
        DSpark: confidence logits given the teacher tokens (``sigmoid`` gives ``c_k``).
    """

    hidden: torch.Tensor
    logits: torch.Tensor
    markov_logits: torch.Tensor | None
    confidence_logits: torch.Tensor | None


def block_targets(
    input_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    anchor_index: torch.Tensor,
    block_size: int,
    loss_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and the supervised prefix of each anchor block in a packed batch.

    Parameters
    ----------
    input_ids : Tensor (T,) int
        Packed token ids of all sequences.
    cu_seqlens : Tensor (S + 1,) int
        Sequence boundaries (prefix sums, ``cu_seqlens[0] == 0``).
    anchor_index : Tensor (N,) int
        Global index (into T) of each block's anchor token.
    block_size : int
        G.
    loss_mask : Tensor (T,) bool, optional
        Positions whose token may be a label (assistant text).

    Returns
    -------
    labels : Tensor (N, G) int64
        ``input_ids[anchor + 1 + k]`` (clamped where invalid).
    valid : Tensor (N, G) bool
        Contiguous valid prefix: the label exists in the anchor's sequence (and is in the loss
        mask), for this and every earlier position of the block.
    """
    seq = torch.searchsorted(cu_seqlens[1:], anchor_index, right=True)
    end = cu_seqlens[1:][seq]  # exclusive end of each anchor's sequence
    idx = anchor_index[:, None] + 1 + torch.arange(block_size, device=anchor_index.device)[None, :]
    ok = idx < end[:, None]
    idx = torch.minimum(idx, (end - 1)[:, None])
    if loss_mask is not None:
        ok = ok & loss_mask[idx].bool()
    return input_ids[idx].long(), ok.long().cumprod(dim=1).bool()


class DFlashDrafter(Drafter):
    """Parallel block drafter (DFlash).

    Parameters
    ----------
    config : DrafterConfig
    target : PreTrainedModel
        The Hugging Face causal LM whose embedding, LM head and RoPE the drafter shares.
    """

    kind = "dflash"

    def __init__(self, config: DrafterConfig, target: Any) -> None:
        super().__init__(config, target)
        d, eps, g = config.hidden_size, config.rms_norm_eps, config.gemma_norm
        self.fc = nn.Linear(self.feature_dim, d, bias=False)
        self.hidden_norm = RMSNorm(d, eps, g)
        self.layers = nn.ModuleList(DraftBlock(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(d, eps, g)
        ids = torch.tensor([config.mask_token_id], device=self._shared[0].weight.device)
        mask_row = self._shared[0](ids)[0].detach().float()
        self.mask_embedding = nn.Parameter(
            mask_row.clone(), requires_grad=config.learn_mask_embedding
        )
        self._build_heads(config)
        self.reset_parameters()
        with torch.no_grad():
            self.mask_embedding.copy_(mask_row)
        ref = self._shared[0].weight
        self.to(device=ref.device, dtype=ref.dtype)

    def _build_heads(self, config: DrafterConfig) -> None:
        """DFlash has no sequential head."""

    # --- backbone ---------------------------------------------------------------------------
    def context(self, features: torch.Tensor) -> torch.Tensor:
        """``H_ctx = RMSNorm(W_c [H(l1); ...; H(lm)])`` for features ``[..., F]``."""
        return self.hidden_norm(self.fc(features.to(self.fc.weight.dtype)))

    def block_inputs(self, anchor: torch.Tensor, size: int) -> torch.Tensor:
        """``[emb(anchor), mask, ..., mask]`` of shape ``[B, size, d]``."""
        first = self.embed(anchor)[:, None, :]
        masks = self.mask_embedding.to(first.dtype).expand(anchor.shape[0], size - 1, -1)
        return torch.cat([first, masks], dim=1)

    def _run_layers(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        ctx_kv: list[tuple[torch.Tensor, torch.Tensor] | None],
    ) -> torch.Tensor:
        cos, sin = rope_cos_sin(self.rotary, x, positions)
        for layer, kv in zip(self.layers, ctx_kv, strict=False):
            x = layer(x, cos, sin, visible, kv)
        return self.norm(x)

    # --- inference ----------------------------------------------------------------------------
    def new_state(self, batch: int) -> BlockState:
        return BlockState(RaggedKVCache(len(self.layers), batch, self.device))

    @torch.no_grad()
    def commit(
        self,
        state: BlockState,
        features: torch.Tensor,
        next_tokens: torch.Tensor,
        counts: torch.Tensor,
    ) -> None:
        cache = state.cache
        h_ctx = self.context(features)
        pos = cache.lengths[:, None] + torch.arange(h_ctx.shape[1], device=h_ctx.device)[None, :]
        cos, sin = rope_cos_sin(self.rotary, h_ctx, pos)
        for i, layer in enumerate(self.layers):
            k, v = layer.context_kv(h_ctx, cos, sin)
            cache.write(i, k, v, counts)
        cache.advance(counts)

    def block_forward(self, state: BlockState, anchor: torch.Tensor, size: int) -> torch.Tensor:
        """Hidden states ``h [B, size, d]`` of the block ``[anchor, MASK...]`` at each request's
        next position (context: every committed entry in ``state``)."""
        cache = state.cache
        x = self.block_inputs(anchor, size)
        upto = cache.max_length()
        pos = cache.lengths[:, None] + torch.arange(size, device=x.device)[None, :]
        own = torch.ones(x.shape[0], size, dtype=torch.bool, device=x.device)
        visible = torch.cat([cache.valid(upto), own], dim=1)[:, None, None, :].expand(
            -1, 1, size, -1
        )
        kvs = [cache.get(i, upto) for i in range(len(self.layers))]
        return self._run_layers(x, pos, visible, kvs)

    @torch.no_grad()
    def propose(
        self,
        state: BlockState,
        anchor: torch.Tensor,
        *,
        temperature: torch.Tensor,
        top_k: torch.Tensor | None = None,
        top_p: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_tokens: int | None = None,
    ) -> Proposal:
        size = num_tokens or self.config.block_size
        h = self.block_forward(state, anchor, size)
        return self._sample(h, anchor, temperature, top_k, top_p, generator)

    def _sample(self, h, anchor, temperature, top_k, top_p, generator) -> Proposal:
        # DFlash: every position is drawn independently from its own base distribution.
        bsz, size, _ = h.shape
        logits = self.compute_logits(h).float().flatten(0, 1)

        def rep(t: Any) -> Any:
            return None if t is None else t.repeat_interleave(size)

        proc = process_logits(logits, rep(temperature), rep(top_k), rep(top_p))
        tok = sample_processed(proc, rep(temperature) <= 0, generator=generator)
        return Proposal(tok.view(bsz, size), proc.view(bsz, size, -1), None)

    # --- training -----------------------------------------------------------------------------
    def forward_train(
        self,
        target_hidden: torch.Tensor,
        input_ids: torch.Tensor,
        cu_seqlens: torch.Tensor,
        anchor_index: torch.Tensor,
        teacher_tokens: torch.Tensor | None = None,
        block_size: int | None = None,
        block_chunk: int | None = None,
        heads: bool = True,
    ) -> BlockTrainOutput:
        """Forward over a packed batch of anchor blocks (teacher forcing, index-based masks).

        Parameters
        ----------
        target_hidden : Tensor (T, F)
            Concatenated feature-layer outputs of the target for all packed tokens.
        input_ids : Tensor (T,) int
        cu_seqlens : Tensor (S + 1,) int
            Boundaries of the packed sequences; positions restart at 0 in each.
        anchor_index : Tensor (N,) int
            Global index of each block's anchor. Block b sees the context rows of its sequence
            strictly before its anchor, and its own G rows (bidirectionally).
        teacher_tokens : Tensor (N, G) int, optional
            Ground-truth drafts ``x_1..x_G`` (see :func:`block_targets`); needed by DSpark's heads.
        block_size : int, optional
            G (default ``config.block_size``).
        block_chunk : int, optional
            Run the blocks this many at a time (same result, bounded memory); default all.
        heads : bool
            Compute the (N, G, V) logits here; ``False`` returns only ``hidden`` so a loss can
            call :meth:`block_logits` on chunks of blocks (bounded memory).

        Returns
        -------
        BlockTrainOutput
        """
        size = block_size or self.config.block_size
        total, n_blocks = input_ids.shape[0], anchor_index.shape[0]
        dev = input_ids.device
        ar_t = torch.arange(total, device=dev)
        seq_of = torch.searchsorted(cu_seqlens[1:], ar_t, right=True)
        pos_ctx = ar_t - cu_seqlens[seq_of]
        # Injected context K/V do not depend on block states: computed once for every chunk.
        h_ctx = self.context(target_hidden)[None]
        cos, sin = rope_cos_sin(self.rotary, h_ctx, pos_ctx[None])
        kvs = [layer.context_kv(h_ctx, cos, sin) for layer in self.layers]
        # Blocks never see each other, so processing them in chunks is exact and bounds the
        # materialised mask and attention scores to (chunk * G) x (T + chunk * G).
        chunk = block_chunk or n_blocks
        outs = []
        for lo in range(0, n_blocks, chunk):
            anchors = anchor_index[lo : lo + chunk]
            nb = anchors.shape[0]
            # Visibility from indices (the mask_mod of a flex-attention BlockMask, materialised).
            q_block = torch.arange(nb * size, device=dev) // size
            ctx_vis = (seq_of[None, :] == seq_of[anchors][q_block][:, None]) & (
                ar_t[None, :] < anchors[q_block][:, None]
            )
            blk_vis = q_block[:, None] == q_block[None, :]
            visible = torch.cat([ctx_vis, blk_vis], dim=1)[None, None]
            x = self.block_inputs(input_ids[anchors], size).reshape(1, nb * size, -1)
            pos = (pos_ctx[anchors][:, None] + torch.arange(size, device=dev)[None, :]).reshape(
                1, -1
            )
            outs.append(self._run_layers(x, pos, visible, kvs).view(nb, size, -1))
        h = torch.cat(outs, dim=0)
        if not heads:
            return BlockTrainOutput(h, None, None, None)  # type: ignore[arg-type]
        return BlockTrainOutput(h, *self.block_logits(h, input_ids[anchor_index], teacher_tokens))

    def block_logits(
        self, h: torch.Tensor, anchor: torch.Tensor, teacher_tokens: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Base logits (N, G, V), DSpark's Markov logits and confidence logits for hidden
        states ``h (N, G, d)`` of blocks with anchor tokens ``anchor (N,)`` (teacher forcing)."""
        logits = self.compute_logits(h)
        markov, conf = self._train_heads(h, logits, anchor, teacher_tokens)
        return logits, markov, conf

    def _train_heads(self, h, logits, anchor, teacher_tokens):
        return None, None
