"""Random verify_attention problems: ragged requests over a shuffled paged cache."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch


@dataclass
class AttnCase:
    """One problem: per-request query counts and prefix lengths plus the head layout."""

    qo_lens: tuple[int, ...]
    prefix_lens: tuple[int, ...]
    heads: int = 8
    kv_heads: int = 2
    head_dim: int = 64
    page_size: int = 16
    parents: str = "tree"  # "tree" | "chain" (explicit parents) | "causal" (parents=None)
    dtype: torch.dtype = torch.float32

    def __str__(self) -> str:
        return (
            f"qo{list(self.qo_lens)}-pre{list(self.prefix_lens)}-H{self.heads}/{self.kv_heads}"
            f"-D{self.head_dim}-ps{self.page_size}-{self.parents}"
        )


def random_parents(n: int, g: torch.Generator) -> list[int]:
    """A random topological tree: query i's parent is uniform in [-1, i)."""
    return [int(torch.randint(-1, i, (1,), generator=g)) if i > 0 else -1 for i in range(n)]


def make_inputs(case: AttnCase, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed)
    R = len(case.qo_lens)
    kv = [p + n for p, n in zip(case.prefix_lens, case.qo_lens, strict=True)]
    ps = case.page_size
    used = [(k + ps - 1) // ps for k in kv]
    max_pages = max(used, default=0) + 1  # one spare column: entries past kv_len are never read
    num_pages = sum(used) + 2
    perm = torch.randperm(num_pages, generator=g).to(torch.int32)
    block_table = torch.full((R, max_pages), -7, dtype=torch.int32)  # garbage beyond the used pages
    c = 0
    for r in range(R):
        block_table[r, : used[r]] = perm[c : c + used[r]]
        c += used[r]
    T = sum(case.qo_lens)
    D, Hk = case.head_dim, case.kv_heads
    q = torch.randn(T, case.heads, D, generator=g).to(case.dtype)
    k_cache = torch.randn(num_pages, ps, Hk, D, generator=g).to(case.dtype)
    v_cache = torch.randn(num_pages, ps, Hk, D, generator=g).to(case.dtype)
    if case.parents == "tree":
        parents = torch.tensor(
            functools.reduce(operator.iadd, (random_parents(n, g) for n in case.qo_lens), []),
            dtype=torch.int32,
        )
    elif case.parents == "chain":
        parents = torch.tensor(
            functools.reduce(operator.iadd, (list(range(-1, n - 1)) for n in case.qo_lens), []),
            dtype=torch.int32,
        )
    else:
        parents = None
    qo_indptr = torch.tensor([0, *torch.tensor(case.qo_lens).cumsum(0).tolist()], dtype=torch.int32)
    out = {
        "q": q,
        "k_cache": k_cache,
        "v_cache": v_cache,
        "qo_indptr": qo_indptr,
        "block_table": block_table,
        "kv_len": torch.tensor(kv, dtype=torch.int32),
        "parents": parents,
    }
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}


CASES = [
    AttnCase((3, 0, 5, 1), (40, 7, 0, 99)),
    AttnCase((8, 8), (2048 - 8, 13), heads=32, kv_heads=8, head_dim=128, parents="causal"),
    AttnCase(
        (1, 1, 1), (17, 64, 200), heads=4, kv_heads=4, head_dim=128, page_size=1, parents="causal"
    ),
    AttnCase((7, 33, 2), (31, 65, 1), heads=8, kv_heads=1, head_dim=64, page_size=64),
    AttnCase((5, 12), (0, 77), heads=8, kv_heads=2, head_dim=256, page_size=16, parents="chain"),
    AttnCase((0, 0, 4), (3, 0, 129), heads=4, kv_heads=1, head_dim=64, page_size=1),
    AttnCase((64,), (100,), heads=4, kv_heads=1, head_dim=128, page_size=16),
]
