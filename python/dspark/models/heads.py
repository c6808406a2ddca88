"""DSpark sequential heads (Markov, gated Markov, RNN) and the confidence head.

Every head exposes the same two APIs, and both carry the recurrent state (the reference's
single-step RNN API silently resets it to 0):

* ``block_bias(h [N, G, d], prev [N, G]) -> bias [N, G, V]`` teacher-forced over a block
  (training), and
* ``step_bias(h [B, d], prev [B], state) -> (bias [B, V], state)`` one step (sampling).

``prev[k]`` is the token before position k (``prev[0]`` is the anchor). Maths:
``docs/algorithms.md`` section 2.4.
"""

from __future__ import annotations

import torch
from torch import nn

from dspark.models.config import DrafterConfig

__all__ = ["ConfidenceHead", "GatedMarkovHead", "MarkovHead", "RNNHead", "build_head"]


class MarkovHead(nn.Module):
    """Vanilla Markov head: ``B(x_{k-1}) = W2 @ W1[x_{k-1}]``.

    ``w1`` is an embedding ``[V, r]``; ``w2`` a bias-free ``Linear(r, V)`` whose weight
    ``[V, r]`` is the spec's ``W2`` transposed (both tables are row-contiguous in r, which suits
    a fused kernel).
    """

    has_state = False

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__()
        r, v = cfg.markov_rank, cfg.vocab_size
        self.rank = r
        self.w1 = nn.Embedding(v, r)
        self.w2 = nn.Linear(r, v, bias=False)

    def init_state(self, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        return None

    def features(self, prev: torch.Tensor) -> torch.Tensor:
        """``W1[prev]`` (the confidence head's Markov features)."""
        return self.w1(prev)

    def _bias(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.w2(e)

    def block_bias(self, h: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self._bias(h, self.w1(prev))

    def step_bias(
        self, h: torch.Tensor, prev: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._bias(h, self.w1(prev)), state


class GatedMarkovHead(MarkovHead):
    """Gated variant: ``g = sigmoid(W_g [h_k ; W1[x_{k-1}]] + b_g)``, ``B = W2 (g W1[x_{k-1}])``."""

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__(cfg)
        self.gate_proj = nn.Linear(cfg.hidden_size + cfg.markov_rank, cfg.markov_rank)

    def _bias(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate_proj(torch.cat([h, e.to(h.dtype)], dim=-1)))
        return self.w2(g * e)


class RNNHead(MarkovHead):
    """RNN head (paper eq. 6): ``z_k = [s_{k-1} ; W1[x_{k-1}] ; h_k]``, one ``Linear(2r + d, 3r)``
    with bias split into gate, candidate and output; ``s_k = sig(g) s_{k-1} + (1 - sig(g)) tanh(c)``
    and ``B_k = W2 tanh(o)`` (from ``z_k``, i.e. the previous state); ``s_0 = 0``.
    """

    has_state = True

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__(cfg)
        r = cfg.markov_rank
        self.joint_proj = nn.Linear(2 * r + cfg.hidden_size, 3 * r)

    def init_state(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch, self.rank, dtype=like.dtype, device=like.device)

    def step_bias(
        self, h: torch.Tensor, prev: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = self.init_state(h.shape[0], h)
        e = self.w1(prev)
        a_g, a_c, a_o = self.joint_proj(torch.cat([state, e.to(h.dtype), h], dim=-1)).chunk(
            3, dim=-1
        )
        gate = torch.sigmoid(a_g)
        new_state = gate * state + (1 - gate) * torch.tanh(a_c)
        return self.w2(torch.tanh(a_o)), new_state

    def block_bias(self, h: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        # Teacher-forced unroll over the block: the same recurrence as step_bias.
        state = self.init_state(h.shape[0], h)
        out = []
        for k in range(h.shape[1]):
            b, state = self.step_bias(h[:, k], prev[:, k], state)
            out.append(b)
        return torch.stack(out, dim=1)


def build_head(cfg: DrafterConfig) -> MarkovHead:
    """The sequential head named by ``cfg.head_type``."""
    return {"markov": MarkovHead, "gated": GatedMarkovHead, "rnn": RNNHead}[cfg.head_type](cfg)


class ConfidenceHead(nn.Module):
    """``c_k = sigmoid(w . [h_k ; W1[x_{k-1}]] + b)``: P(draft k survives | drafts < k survived).

    ``forward`` returns the logit; features are not detached (trained end to end).
    """

    def __init__(self, cfg: DrafterConfig) -> None:
        super().__init__()
        self.uses_markov = cfg.confidence_uses_markov
        width = cfg.hidden_size + (cfg.markov_rank if self.uses_markov else 0)
        self.proj = nn.Linear(width, 1)

    def forward(self, h: torch.Tensor, markov_features: torch.Tensor | None) -> torch.Tensor:
        if self.uses_markov:
            assert markov_features is not None, "a Markov-feature confidence head needs them"
            x = torch.cat([h, markov_features.to(h.dtype)], dim=-1)
        else:
            x = h
        return self.proj(x).squeeze(-1)
