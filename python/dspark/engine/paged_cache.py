"""A paged KV cache that dspark owns: one page pool per layer, a page table per request.

Every layer's keys and values live in ``[num_pages, page_size, Hk, D]`` pools (the layout
:func:`dspark.verify_attention` reads). A request owns a list of pages and a length; slot ``s`` of
the request is slot ``s % page_size`` of page ``pages[s // page_size]``. Speculative decoding
appends a whole draft, then keeps only the accepted prefix: :meth:`PagedKVCache.truncate` rolls
back by length in O(1) (pages past the new end go back to the free list), with no cropping, no
compaction and no holes. A tree's accepted path is made contiguous once by
:meth:`PagedKVCache.keep` (a copy of at most ``depth`` slots per layer).

Page accounting is exact: :attr:`PagedKVCache.num_free_pages` + the pages of every live request
equals :attr:`PagedKVCache.num_pages` at all times, and :meth:`PagedKVCache.free` returns all of a
request's pages.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Sequence

import torch

__all__ = ["OutOfPages", "PagedKVCache"]


class OutOfPages(RuntimeError):
    """Raised when an allocation needs more pages than are free (the caller may preempt)."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return value


class PagedKVCache:
    """Page pools for ``num_layers`` layers plus per-request page tables.

    Parameters
    ----------
    num_layers, num_kv_heads, head_dim : int
        Shape of the model's attention (``Hk`` heads of dimension ``D`` per layer).
    num_pages : int
        Pages per layer pool (every request's pages come from one shared free list).
    page_size : int
        Slots per page.
    dtype, device
        Of the pools (the model's compute dtype and device).
    """

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        num_pages: int,
        page_size: int = 16,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, v in (
            ("num_layers", num_layers),
            ("num_kv_heads", num_kv_heads),
            ("head_dim", head_dim),
            ("num_pages", num_pages),
            ("page_size", page_size),
        ):
            _positive_int(name, v)
        self.num_layers, self.num_pages, self.page_size = num_layers, num_pages, page_size
        shape = (num_layers, num_pages, page_size, num_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # [L, P, S, Hk, D]
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        # Per-layer views, made once (a step reads them twice per layer).
        self._views = [(self.k[i], self.v[i]) for i in range(num_layers)]
        flat = (num_pages * page_size, num_kv_heads, head_dim)
        self._flat = [(k.view(flat), v.view(flat)) for k, v in self._views]
        self._version = 0  # bumped whenever any page table changes
        # Low page ids first: a LIFO stack popped from the end.
        self._free: list[int] = list(range(num_pages - 1, -1, -1))
        self._pages: dict[Hashable, list[int]] = {}
        self._len: dict[Hashable, int] = {}

    # --- accounting -----------------------------------------------------------------------
    @property
    def version(self) -> int:
        """A counter that changes whenever any request's page table changes (a cache key)."""
        return self._version

    @property
    def num_free_pages(self) -> int:
        """Pages not owned by any request."""
        return len(self._free)

    def pages_for(self, num_slots: int) -> int:
        """Pages needed to hold ``num_slots`` slots."""
        return -(-int(num_slots) // self.page_size)

    def __contains__(self, req: Hashable) -> bool:
        return req in self._len

    @property
    def requests(self) -> list[Hashable]:
        """Live requests, in the order they were added."""
        return list(self._len)

    def length(self, req: Hashable) -> int:
        """Committed slots of ``req`` (its next position)."""
        return self._len[req]

    def pages(self, req: Hashable) -> list[int]:
        """A copy of ``req``'s page table."""
        return list(self._pages[req])

    def can_grow(self, lengths: dict[Hashable, int]) -> bool:
        """Whether every ``req`` in ``lengths`` could grow to its new length at once."""
        need = sum(
            max(0, self.pages_for(n) - len(self._pages.get(r, ()))) for r, n in lengths.items()
        )
        return need <= len(self._free)

    # --- lifetime -------------------------------------------------------------------------
    def add(self, req: Hashable) -> None:
        """Start an empty request."""
        if req in self._len:
            raise ValueError(f"req: request {req!r} is already in the cache")
        self._pages[req], self._len[req] = [], 0
        self._version += 1

    def free(self, req: Hashable) -> None:
        """Drop ``req`` and return all its pages."""
        pages = self._pages.pop(req)
        del self._len[req]
        self._free.extend(reversed(pages))
        self._version += 1

    def reserve(self, req: Hashable, num_slots: int) -> None:
        """Make ``req``'s page table cover ``num_slots`` slots (its length is unchanged).

        Raises
        ------
        OutOfPages
            Not enough free pages; nothing was allocated.
        """
        table = self._pages[req]
        need = self.pages_for(num_slots) - len(table)
        if need > len(self._free):
            raise OutOfPages(
                f"request {req!r} needs {need} more pages of {self.page_size} slots, "
                f"{len(self._free)} free of {self.num_pages}"
            )
        if need > 0:
            table.extend(self._free[-1 : -need - 1 : -1])
            del self._free[-need:]
            self._version += 1

    def extend(self, req: Hashable, num_new: int) -> int:
        """Append ``num_new`` slots to ``req``; returns the first new slot (the old length)."""
        start = self._len[req]
        self.reserve(req, start + num_new)
        self._len[req] = start + num_new
        return start

    def truncate(self, req: Hashable, length: int) -> None:
        """Roll ``req`` back to its first ``length`` slots; pages past the end are freed."""
        if not 0 <= length <= self._len[req]:
            raise ValueError(
                f"length: expected 0 <= length <= {self._len[req]} for request {req!r}, "
                f"got {length}"
            )
        self._len[req] = length
        table = self._pages[req]
        keep = self.pages_for(length)
        if len(table) > keep:
            self._free.extend(reversed(table[keep:]))
            del table[keep:]
            self._version += 1

    def keep(self, req: Hashable, start: int, rows: Sequence[int]) -> None:
        """Keep slots ``start + rows[i]`` (increasing) as ``start + i``, drop the rest.

        Used after tree verification: the accepted path's K/V moves to contiguous slots.
        """
        rows = [int(r) for r in rows]
        if any(b <= a for a, b in itertools.pairwise(rows)):
            raise ValueError(f"rows: expected strictly increasing slot offsets, got {rows}")
        end = self._len[req]
        if rows and not (rows[0] >= 0 and start + rows[-1] < end):
            raise ValueError(f"rows: offsets {rows} from {start} exceed the length {end}")
        moved = [(start + r, start + i) for i, r in enumerate(rows) if r != i]
        if moved:
            src = self.slots(req, [s for s, _ in moved])
            dst = self.slots(req, [d for _, d in moved])
            for pool in (self.k, self.v):
                flat = pool.view(self.num_layers, -1, *pool.shape[3:])
                flat[:, dst] = flat[:, src]
        self.truncate(req, start + len(rows))

    # --- addressing -----------------------------------------------------------------------
    def slots(self, req: Hashable, positions: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """Flat slot ids (``page * page_size + offset``) of ``req``'s ``positions``, int64."""
        pos = torch.as_tensor(list(positions) if not torch.is_tensor(positions) else positions)
        table = torch.tensor(self._pages[req], dtype=torch.int64)
        s = self.page_size
        return (table[pos // s] * s + pos % s).to(self.k.device)

    def block_table(self, reqs: Sequence[Hashable]) -> torch.Tensor:
        """``[R, max_pages]`` int32 page tables of ``reqs`` (rows padded with page 0)."""
        tables = [self._pages[r] for r in reqs]
        width = max(1, max(map(len, tables), default=0))
        rows = [t + [0] * (width - len(t)) for t in tables]
        if not rows:
            return torch.zeros(0, width, dtype=torch.int32, device=self.k.device)
        return torch.tensor(rows, dtype=torch.int32, device=self.k.device)

    def layer(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``[P, S, Hk, D]`` key and value pools of layer ``idx`` (views)."""
        return self._views[idx]

    def flat_layer(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``idx``'s pools as ``[P * S, Hk, D]`` rows indexed by flat slot id (views)."""
        return self._flat[idx]
