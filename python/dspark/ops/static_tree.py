"""Static draft trees (EAGLE-style ``choices``) for tree drafting and tree verification.

Node ``i`` is the child of rank ``ranks[i]`` (0 = the drafter's most likely token) of its parent.
Top-k children are deterministic given the drafter's distribution, so the verifier's
deterministic-draft rule (accept child c with probability p(c), remove it from p on rejection)
keeps the output exactly the target's (docs/algorithms.md section 1, trees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dspark.ops.tree import tree_from_choices

__all__ = ["StaticTree"]


@dataclass
class StaticTree:
    """A fixed tree of N draft nodes.

    Attributes
    ----------
    parents : Tensor (N,) int32
        Local parent per node (-1 = the anchor), topological order.
    ranks : list of int
        Child rank of each node under its parent.
    depth : Tensor (1 + N,) int64
        Depth of ``[anchor, node_0, ...]`` (anchor 0).
    ancestors : Tensor (1 + N, 1 + N) bool
        ``ancestors[i, j]``: j is i or an ancestor of i (index 0 is the anchor).
    """

    parents: torch.Tensor
    ranks: list[int]
    depth: torch.Tensor
    ancestors: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return len(self.ranks)

    @property
    def max_depth(self) -> int:
        return int(self.depth.max())

    @classmethod
    def from_choices(cls, choices: Sequence[Sequence[int]]) -> StaticTree:
        """Build from paths of child ranks, e.g. ``[(0,), (1,), (0, 0), (0, 1), (0, 0, 0)]``."""
        parents, order = tree_from_choices(choices)
        n = len(order)
        if n == 0:
            raise ValueError("tree_choices: expected at least one node")
        anc = torch.zeros(n + 1, n + 1, dtype=torch.bool)
        anc[:, 0] = True
        for i in range(n):
            anc[i + 1, i + 1] = True
            p = int(parents[i])
            if p >= 0:
                anc[i + 1] |= anc[p + 1]
        depth = torch.tensor([0] + [len(c) for c in order], dtype=torch.int64)
        return cls(parents, [c[-1] for c in order], depth, anc)
