"""Eagle3: a one-layer autoregressive drafter with training-time-test (TTT) unrolling.

Pairing (docs/algorithms.md section 2.1): the entry at position t combines the target feature
``g_t`` (which encodes tokens <= t) with the embedding of token t+1 and predicts token t+2. While
drafting, step k feeds its own previous hidden state instead of a target feature. Any number of
feature layers is accepted (the reference asserts exactly five).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from dspark.models.base import Drafter, Proposal
from dspark.models.config import DrafterConfig
from dspark.models.kv_cache import RaggedKVCache
from dspark.models.layers import Attention, RMSNorm, SwiGLU, apply_rope, attend, rope_cos_sin
from dspark.models.sampling import process_logits, sample_processed

__all__ = ["Eagle3Drafter", "Eagle3TrainOutput"]


class Eagle3Layer(nn.Module):
    """Decoder layer over ``[norm(emb) ; norm(g)]`` (2d wide) whose residual stream is ``g``."""

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__()
        d, eps, gn = cfg.hidden_size, cfg.rms_norm_eps, cfg.gemma_norm
        self.input_layernorm = RMSNorm(d, eps, gn)
        self.hidden_norm = RMSNorm(d, eps, gn)
        self.self_attn = Attention(cfg, in_dim=2 * d)
        self.post_attention_layernorm = RMSNorm(d, eps, gn)
        self.mlp = SwiGLU(d, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, emb, g, cos, sin, visible, extra_kv):
        x = torch.cat([self.input_layernorm(emb), self.hidden_norm(g)], dim=-1)
        a, kv = self.self_attn(x, cos, sin, visible, extra_kv)
        h = g + a
        return h + self.mlp(self.post_attention_layernorm(h)), kv

    def ttt_step(self, emb, g, cos, sin, keys, values, causal, chunk):
        """One TTT step over all T positions (batch 1), queries in chunks of ``chunk``.

        Step s (= len(keys)) attends to the causal step-0 keys plus its own and earlier steps'
        keys at the same position; appends this step's keys/values to ``keys``/``values``.
        Chunking is exact: a query chunk [lo, hi) needs step-0 keys < hi and diagonal keys in
        [lo, hi) only.
        """
        attn = self.self_attn
        x = torch.cat([self.input_layernorm(emb), self.hidden_norm(g)], dim=-1)
        q = apply_rope(attn.q_norm(attn._split(attn.q_proj(x), attn.heads)), cos, sin)
        k, v = attn.project_kv(x, cos, sin)
        keys.append(k)
        values.append(v)
        total, outs = q.shape[2], []
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            kk = torch.cat([keys[0][:, :, :hi]] + [t[:, :, lo:hi] for t in keys[1:]], dim=2)
            vv = torch.cat([values[0][:, :, :hi]] + [t[:, :, lo:hi] for t in values[1:]], dim=2)
            diag = torch.eye(hi - lo, dtype=torch.bool, device=q.device)
            vis = torch.cat([causal[lo:hi, :hi]] + [diag] * (len(keys) - 1), dim=1)
            outs.append(attend(q[:, :, lo:hi], kk, vv, vis[None, None], attn.scale))
        h = g + attn.o_proj(torch.cat(outs, dim=1))
        return h + self.mlp(self.post_attention_layernorm(h))


@dataclass
class Eagle3State:
    """Ragged cache of committed entries and the hidden state of each request's last entry."""

    cache: RaggedKVCache
    last_hidden: torch.Tensor | None = None


class Eagle3TrainOutput(NamedTuple):
    """TTT forward over T packed positions and S unrolled steps.

    Attributes
    ----------
    logits : Tensor (S, T, V)
        Step s at position t predicts token ``t + 2 + s``.
    labels : Tensor (S, T) int64
    valid : Tensor (S, T) bool
        The label lies in the same sequence.
    hidden : Tensor (S, T, d) or None
        Normed hidden states (``logits = compute_logits(hidden)``); set (and ``logits`` None)
        by ``forward_train(..., heads=False)``.
    """

    logits: torch.Tensor | None
    labels: torch.Tensor
    valid: torch.Tensor
    hidden: torch.Tensor | None = None


class Eagle3Drafter(Drafter):
    """Autoregressive Eagle3 drafter (chain drafting; full target vocabulary)."""

    kind = "eagle3"
    supports_tree = True

    def __init__(self, config: DrafterConfig, target: Any) -> None:
        super().__init__(config, target)
        if config.num_layers != 1:
            raise ValueError(
                f"num_layers: Eagle3 has exactly one draft layer, got {config.num_layers}"
            )
        self.fc = nn.Linear(self.feature_dim, config.hidden_size, bias=False)
        self.layer = Eagle3Layer(config)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.gemma_norm)
        self.reset_parameters()
        ref = self._shared[0].weight
        self.to(device=ref.device, dtype=ref.dtype)

    def _step(
        self, state: Eagle3State, emb: torch.Tensor, g: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """Run new entries ``[B, n, d]`` causally after the cache, store them, return outputs."""
        cache, n = state.cache, emb.shape[1]
        upto = cache.max_length()
        ar = torch.arange(n, device=emb.device)
        pos = cache.lengths[:, None] + ar[None, :]
        causal = (ar[None, :] <= ar[:, None])[None].expand(emb.shape[0], -1, -1)
        visible = torch.cat([cache.valid(upto)[:, None, :].expand(-1, n, -1), causal], dim=2)[
            :, None
        ]
        cos, sin = rope_cos_sin(self.rotary, emb, pos)
        out, (k, v) = self.layer(emb, g, cos, sin, visible, cache.get(0, upto))
        cache.write(0, k, v, counts)
        cache.advance(counts)
        return out

    # --- inference ----------------------------------------------------------------------------
    def new_state(self, batch: int) -> Eagle3State:
        return Eagle3State(RaggedKVCache(1, batch, self.device))

    def select(self, state: Eagle3State, indices: torch.Tensor) -> None:
        state.cache.select(indices)
        if state.last_hidden is not None:
            state.last_hidden = state.last_hidden[indices]

    def join(self, state: Eagle3State, other: Eagle3State) -> None:
        rows = state.cache.batch
        state.cache.join(other.cache)
        hs = [h for h in (state.last_hidden, other.last_hidden) if h is not None]
        if rows and other.cache.batch and len(hs) < 2:
            raise ValueError("other: join needs both states committed (or one of them empty)")
        state.last_hidden = torch.cat(hs) if hs else None

    @torch.no_grad()
    def commit(
        self,
        state: Eagle3State,
        features: torch.Tensor,
        next_tokens: torch.Tensor,
        counts: torch.Tensor,
    ) -> None:
        g = self.fc(features.to(self.fc.weight.dtype))
        out = self._step(state, self.embed(next_tokens), g, counts)
        last = out.gather(1, (counts - 1).clamp_min(0)[:, None, None].expand(-1, 1, out.shape[-1]))[
            :, 0
        ]
        if state.last_hidden is None:
            state.last_hidden = last
        else:
            state.last_hidden = torch.where((counts > 0)[:, None], last, state.last_hidden)

    @torch.no_grad()
    def propose(
        self,
        state: Eagle3State,
        anchor: torch.Tensor,
        *,
        temperature: torch.Tensor,
        top_k: torch.Tensor | None = None,
        top_p: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_tokens: int | None = None,
    ) -> Proposal:
        if state.last_hidden is None:
            raise ValueError("state: commit the prompt's features before proposing")
        steps = num_tokens or self.config.block_size
        committed = state.cache.lengths.clone()
        ones = torch.ones_like(committed)
        h, toks, logits = state.last_hidden, [], []
        greedy = temperature <= 0
        for k in range(steps):
            proc = process_logits(
                self.compute_logits(self.norm(h)).float(), temperature, top_k, top_p
            )
            tok = sample_processed(proc, greedy, generator=generator)
            toks.append(tok)
            logits.append(proc)
            if k + 1 < steps:
                h = self._step(state, self.embed(tok)[:, None], h[:, None], ones)[:, 0]
        state.cache.truncate(committed)  # drop the draft entries: only committed ones stay
        return Proposal(torch.stack(toks, 1), torch.stack(logits, 1), None)

    @torch.no_grad()
    def propose_tree(self, state: Eagle3State, anchor: torch.Tensor, tree: Any) -> torch.Tensor:
        """Draft a static tree: node i is the ``ranks[i]``-th most likely child of its parent.

        Parameters
        ----------
        state : Eagle3State
        anchor : Tensor (B,)
        tree : dspark.ops.static_tree.StaticTree

        Returns
        -------
        Tensor (B, N) int64
            Node tokens in ``tree`` order (deterministic: pass no draft probabilities to the
            verifier).
        """
        if state.last_hidden is None:
            raise ValueError("state: commit the prompt's features before proposing")
        cache, dev = state.cache, anchor.device
        committed = cache.lengths.clone()
        bsz, n = anchor.shape[0], tree.num_nodes
        parents = tree.parents.tolist()
        anc = tree.ancestors.to(dev)[1:, 1:]  # node-to-node ancestor-or-self
        hidden: list[torch.Tensor | None] = [None] * n
        ranked: dict[int, torch.Tensor] = {}  # node (-1 = root) -> its children's token order
        tokens = torch.zeros(bsz, n, dtype=torch.long, device=dev)
        slot_node: list[int] = []  # tree node stored at offset j after each committed prefix

        def children_order(h: torch.Tensor) -> torch.Tensor:
            logits = self.compute_logits(self.norm(h)).float()
            return torch.sort(logits, dim=-1, descending=True, stable=True).indices

        ranked[-1] = children_order(state.last_hidden)
        for d in range(1, tree.max_depth + 1):
            nodes = [i for i in range(n) if int(tree.depth[i + 1]) == d]
            for i in nodes:
                tokens[:, i] = ranked[parents[i]][:, tree.ranks[i]]
            if d == tree.max_depth:
                break
            # Run this depth's nodes: (parent hidden, own token) at position committed + d - 1,
            # seeing the committed prefix and their tree ancestors only.
            g = torch.stack(
                [state.last_hidden if parents[i] < 0 else hidden[parents[i]] for i in nodes], 1
            )
            upto = cache.max_length()
            j = torch.arange(upto, device=dev)[None, :] - committed[:, None]  # tree offset
            in_tree = (j >= 0) & (j < len(slot_node))
            tree_vis = torch.zeros(bsz, len(nodes), upto, dtype=torch.bool, device=dev)
            if slot_node:
                node_at = torch.tensor(slot_node, device=dev)[j.clamp(0, len(slot_node) - 1)]
                sel = anc[torch.tensor(nodes, device=dev)]  # [n_d, N]
                tree_vis = sel[:, node_at].permute(1, 0, 2) & in_tree[:, None, :]
            vis_cache = (j < 0)[:, None, :] | tree_vis
            own = torch.eye(len(nodes), dtype=torch.bool, device=dev)[None].expand(bsz, -1, -1)
            visible = torch.cat([vis_cache, own], dim=2)[:, None]
            pos = (committed + d - 1)[:, None].expand(-1, len(nodes))
            emb = self.embed(tokens[:, nodes])
            cos, sin = rope_cos_sin(self.rotary, emb, pos)
            out, (k, v) = self.layer(emb, g, cos, sin, visible, cache.get(0, upto))
            counts = torch.full_like(committed, len(nodes))
            cache.write(0, k, v, counts)
            cache.advance(counts)
            slot_node.extend(nodes)
            for col, i in enumerate(nodes):
                hidden[i] = out[:, col]
                ranked[i] = children_order(out[:, col])
        cache.truncate(committed)
        return tokens

    # --- training -----------------------------------------------------------------------------
    def forward_train(
        self,
        target_hidden: torch.Tensor,
        input_ids: torch.Tensor,
        cu_seqlens: torch.Tensor,
        ttt_steps: int | None = None,
        query_chunk: int | None = None,
        heads: bool = True,
    ) -> Eagle3TrainOutput:
        """Training-time-test forward over a packed batch (index-based masks).

        Parameters
        ----------
        target_hidden : Tensor (T, F)
            Concatenated feature-layer outputs of the target.
        input_ids : Tensor (T,) int
        cu_seqlens : Tensor (S + 1,) int
        ttt_steps : int, optional
            Unrolled steps (default ``config.block_size``). Step s >= 1 feeds step s-1's hidden
            state at the same position; keys of step s are the causal step-0 entries of the
            sequence plus the "diagonal" entries of steps 1..s at the same position.
        query_chunk : int, optional
            Attend this many query positions at a time (same result, bounded mask and score
            memory); default all T.
        heads : bool
            Compute the (S, T, V) logits here; ``False`` returns the normed hidden states instead
            so a loss can apply the LM head chunk by chunk (bounded memory).

        Returns
        -------
        Eagle3TrainOutput
        """
        steps = ttt_steps or self.config.block_size
        total, dev = input_ids.shape[0], input_ids.device
        ar = torch.arange(total, device=dev)
        seq_of = torch.searchsorted(cu_seqlens[1:], ar, right=True)
        pos = ar - cu_seqlens[seq_of]
        end = cu_seqlens[1:][seq_of]
        causal = (seq_of[None, :] == seq_of[:, None]) & (ar[None, :] <= ar[:, None])
        g = self.fc(target_hidden.to(self.fc.weight.dtype))[None]
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        all_logits, labels, valid = [], [], []
        for s in range(steps):
            tok_idx = torch.minimum(ar + 1 + s, end - 1)
            lab_idx = ar + 2 + s
            emb = self.embed(input_ids[tok_idx])[None]
            cos, sin = rope_cos_sin(self.rotary, emb, (pos + s)[None])
            h = self.layer.ttt_step(emb, g, cos, sin, keys, values, causal, query_chunk or total)
            hn = self.norm(h)[0]
            all_logits.append(self.compute_logits(hn) if heads else hn)
            labels.append(input_ids[torch.minimum(lab_idx, end - 1)].long())
            valid.append(lab_idx < end)
            g = h
        stacked = torch.stack(all_logits)
        if not heads:
            return Eagle3TrainOutput(None, torch.stack(labels), torch.stack(valid), stacked)
        return Eagle3TrainOutput(stacked, torch.stack(labels), torch.stack(valid))
