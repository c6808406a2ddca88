"""A ragged per-request KV cache for drafters (each request has its own length).

Hugging Face's ``DynamicCache`` keeps one length for the whole batch, so rolling back a different
number of tokens per request is impossible there; drafters instead keep their keys/values here.
Rollback is a length update (no copy), batch shrinking is an index select.
"""

from __future__ import annotations

import torch

__all__ = ["RaggedKVCache"]


class RaggedKVCache:
    """Per-layer keys/values ``[B, Hk, cap + 1, D]`` with per-request lengths ``[B]``.

    Slot ``cap`` is scratch: rows beyond a request's count are written there and never read.
    Slot ``j`` of request ``b`` holds the entry at sequence position ``j``.
    """

    def __init__(self, num_layers: int, batch: int, device: torch.device) -> None:
        self.num_layers = num_layers
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.lengths = torch.zeros(batch, dtype=torch.int64, device=device)

    @property
    def batch(self) -> int:
        return int(self.lengths.shape[0])

    def max_length(self) -> int:
        return int(self.lengths.max()) if self.batch else 0

    def _ensure(self, layer: int, like: torch.Tensor, need: int) -> None:
        buf = self.keys[layer]
        cap = 0 if buf is None else buf.shape[2] - 1
        if need <= cap:
            return
        new_cap = max(need, 2 * cap, 64)
        shape = (like.shape[0], like.shape[1], new_cap + 1, like.shape[3])
        for store in (self.keys, self.values):
            old = store[layer]
            new = torch.zeros(shape, dtype=like.dtype, device=like.device)
            if old is not None:
                new[:, :, :cap] = old[:, :, :cap]
            store[layer] = new

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, counts: torch.Tensor) -> None:
        """Write rows ``0..counts[b]-1`` of ``k, v [B, Hk, n, D]`` after each request's length.

        Lengths advance only in :meth:`advance`, after every layer has been written.
        """
        n = k.shape[2]
        self._ensure(layer, k, self.max_length() + n)
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None  # allocated by _ensure
        assert values is not None
        cap = keys.shape[2] - 1
        idx = self.lengths[:, None] + torch.arange(n, device=k.device)[None, :]
        idx = torch.where(torch.arange(n, device=k.device)[None, :] < counts[:, None], idx, cap)
        idx = idx[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        keys.scatter_(2, idx, k)
        values.scatter_(2, idx, v)

    def advance(self, counts: torch.Tensor) -> None:
        self.lengths = self.lengths + counts.to(self.lengths)

    def get(self, layer: int, upto: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys/values of slots ``[0, upto)`` (None while the layer is empty)."""
        keys, values = self.keys[layer], self.values[layer]
        if keys is None or values is None or upto == 0:
            return None
        return keys[:, :, :upto], values[:, :, :upto]

    def valid(self, upto: int) -> torch.Tensor:
        """``[B, upto]`` bool: slot j holds a committed entry of request b."""
        return torch.arange(upto, device=self.lengths.device)[None, :] < self.lengths[:, None]

    def truncate(self, lengths: torch.Tensor) -> None:
        """Roll each request back to ``lengths[b]`` entries (must not grow)."""
        if bool((lengths > self.lengths).any()):
            raise ValueError("lengths: rollback cannot grow a request's cache")
        self.lengths = lengths.to(self.lengths).clone()

    def select(self, indices: torch.Tensor) -> None:
        """Keep only the requests ``indices`` (in that order)."""
        self.lengths = self.lengths[indices]
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                if t is not None:
                    store[i] = t[indices]

    def join(self, other: RaggedKVCache) -> None:
        """Append ``other``'s requests after this cache's (continuous batching: requests join)."""
        if other.num_layers != self.num_layers:
            raise ValueError(
                f"other: expected a cache of {self.num_layers} layers, got {other.num_layers}"
            )
        for store, theirs in ((self.keys, other.keys), (self.values, other.values)):
            for i, (a, b) in enumerate(zip(store, theirs, strict=True)):
                if a is None and b is None:
                    continue
                like = a if a is not None else b
                assert like is not None
                cap = max(0 if t is None else t.shape[2] - 1 for t in (a, b))
                rows = (self.batch, other.batch)
                shape = (sum(rows), like.shape[1], cap + 1, like.shape[3])
                new = torch.zeros(shape, dtype=like.dtype, device=like.device)
                for t, lo, n in ((a, 0, rows[0]), (b, rows[0], rows[1])):
                    if t is not None:
                        c = t.shape[2] - 1
                        new[lo : lo + n, :, :c] = t[:, :, :c]
                store[i] = new
        self.lengths = torch.cat([self.lengths, other.lengths.to(self.lengths)])
