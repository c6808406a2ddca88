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

from dspark.ops.tree import tree_attention_mask, tree_from_choices, tree_positions

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
        # [anchor, node_0, ...] in verify_attention's query layout: the anchor has parent -1,
        # node i's parent p is query p + 1 (the anchor when p == -1).
        q_parents = torch.cat([torch.tensor([-1], dtype=torch.int32), parents.to(torch.int32) + 1])
        q_parents[1:][parents < 0] = 0
        qo_indptr = torch.tensor([0, n + 1], dtype=torch.int32)
        anc = tree_attention_mask(q_parents, qo_indptr=qo_indptr, layout="dense").view(n + 1, n + 1)
        depth = tree_positions(q_parents, qo_indptr, torch.tensor([n + 1], dtype=torch.int32))
        return cls(parents, [c[-1] for c in order], depth.to(torch.int64), anc.bool())
