"""Tree layouts for verification: converters to dspark's ``parents`` form and attention masks.

dspark's form (``verify_batch``): per request, nodes in topological order with ``parents[i] < i``
(-1 = the anchor) and siblings tried in index order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch

from dspark._checks import check_tensor

__all__ = ["SGLangTree", "tree_attention_mask", "tree_from_choices", "tree_from_sglang"]


def tree_from_choices(
    choices: Sequence[Sequence[int]],
) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Build ``parents`` from Medusa/EAGLE ``choices`` (vLLM ``speculative_token_tree``).

    Parameters
    ----------
    choices : sequence of sequences of int
        Each entry is a path of child ranks from the anchor, e.g. ``[(0,), (1,), (0, 0)]``; every
        proper prefix of an entry must itself be an entry.

    Returns
    -------
    parents : Tensor (N,) int32
        Local parent per node, nodes ordered by (depth, path) so siblings are tried by rank.
    order : list of tuple
        The choices in node order (node i is ``order[i]``).

    Examples
    --------
    >>> parents, order = tree_from_choices([(0,), (1,), (0, 0)])
    >>> parents.tolist(), order
    ([-1, -1, 0], [(0,), (1,), (0, 0)])
    """
    order = sorted({tuple(int(c) for c in ch) for ch in choices}, key=lambda c: (len(c), c))
    index = {c: i for i, c in enumerate(order)}
    parents = []
    for c in order:
        if len(c) == 0:
            raise ValueError("choices: the empty path (the anchor itself) is not a draft node")
        if any(x < 0 for x in c):
            raise ValueError(f"choices: ranks must be >= 0, got {c}")
        if len(c) > 1 and c[:-1] not in index:
            raise ValueError(f"choices: {c} has no parent entry {c[:-1]}")
        parents.append(index[c[:-1]] if len(c) > 1 else -1)
    return torch.tensor(parents, dtype=torch.int32), order


class SGLangTree(NamedTuple):
    """A batch of SGLang trees in dspark's layout.

    Attributes
    ----------
    parents : Tensor (B * N,) int32
        Local parents, flattened over requests.
    draft_indptr : Tensor (B + 1,) int32
        CSR offsets (N nodes per request).
    order : Tensor (B, N) int64
        SGLang node index (1..N; 0 is SGLang's root) of each dspark node: gather draft tokens and
        target rows with it.
    """

    parents: torch.Tensor
    draft_indptr: torch.Tensor
    order: torch.Tensor


def tree_from_sglang(
    retrive_next_token: torch.Tensor, retrive_next_sibling: torch.Tensor
) -> SGLangTree:
    """Convert SGLang's first-child / next-sibling trees to ``parents`` form.

    Parameters
    ----------
    retrive_next_token, retrive_next_sibling : Tensor (B, N + 1) int
        SGLang's links per request; index 0 is the root (the anchor), -1 = none.

    Returns
    -------
    SGLangTree
        Nodes in depth-first pre-order (a topological order that keeps sibling order).
    """
    check_tensor("retrive_next_token", retrive_next_token, shape=(None, None))
    check_tensor(
        "retrive_next_sibling", retrive_next_sibling, shape=tuple(retrive_next_token.shape)
    )
    nxt = retrive_next_token.cpu().tolist()
    sib = retrive_next_sibling.cpu().tolist()
    b, n1 = retrive_next_token.shape
    parents: list[int] = []
    order: list[list[int]] = []
    for r in range(b):
        bad = ValueError(f"retrive_next_token/retrive_next_sibling: invalid tree in request {r}")
        children: list[list[int]] = []
        for u in range(n1):
            kids, c = [], nxt[r][u]
            while c != -1:
                if not 0 < c < n1 or len(kids) >= n1:
                    raise bad
                kids.append(c)
                c = sib[r][c]
            children.append(kids)
        local: dict[int, int] = {}
        stack = [(c, -1) for c in reversed(children[0])]
        while stack:  # depth-first pre-order: a topological order that keeps sibling order
            u, par = stack.pop()
            if u in local:
                raise bad
            local[u] = len(local)
            parents.append(par)
            stack.extend((c, local[u]) for c in reversed(children[u]))
        if len(local) != n1 - 1:
            raise ValueError(
                f"retrive_next_token/retrive_next_sibling: request {r} reaches {len(local)} of "
                f"{n1 - 1} nodes from the root"
            )
        order.append(list(local))
    indptr = torch.arange(0, b + 1, dtype=torch.int32) * (n1 - 1)
    return SGLangTree(
        torch.tensor(parents, dtype=torch.int32), indptr, torch.tensor(order, dtype=torch.int64)
    )


def tree_attention_mask(
    parents: torch.Tensor | None,
    draft_indptr: torch.Tensor,
    layout: Literal["qlen_bitpacked", "dense"] = "qlen_bitpacked",
) -> torch.Tensor:
    """Ancestor masks over each request's query tokens ``[anchor, node_0, ..., node_{n-1}]``.

    Query ``j`` is visible to query ``i`` when ``j`` is ``i`` or one of its ancestors (the anchor
    is every node's ancestor); the KV prefix is always visible and not part of the mask.

    Parameters
    ----------
    parents : Tensor (N,) int32, optional
        As in :func:`verify_batch`; None = chains (causal).
    draft_indptr : Tensor (R + 1,) int32
    layout : {"qlen_bitpacked", "dense"}
        "qlen_bitpacked": int32 words, bit ``j % 32`` of word ``j // 32`` of row ``i``;
        "dense": bool.

    Returns
    -------
    Tensor (N + R, W) int32 or (N + R, Q) bool
        One row per query token (requests concatenated), ``Q`` = the largest request's query
        count and ``W = ceil(Q / 32)``.
    """
    if layout not in ("qlen_bitpacked", "dense"):
        raise ValueError(f"layout: expected 'qlen_bitpacked' or 'dense', got {layout!r}")
    check_tensor("draft_indptr", draft_indptr, shape=(None,))
    ip = draft_indptr.cpu().tolist()
    par = None if parents is None else parents.cpu().tolist()
    q_max = max((ip[r + 1] - ip[r] + 1 for r in range(len(ip) - 1)), default=1)
    dense = torch.zeros(ip[-1] + len(ip) - 1, q_max, dtype=torch.bool)
    row = 0
    for r in range(len(ip) - 1):
        n0, n = ip[r], ip[r + 1] - ip[r]
        dense[row, 0] = True
        for i in range(n):
            p = (i - 1) if par is None else par[n0 + i]
            if not -1 <= p < i:
                raise ValueError(
                    f"parents: expected -1 <= parents[i] < i, got parents[{n0 + i}] = {p}"
                )
            dense[row + 1 + i] = dense[row + 1 + p]
            dense[row + 1 + i, 1 + i] = True
        row += n + 1
    dense = dense.to(draft_indptr.device)
    if layout == "dense":
        return dense
    words = (q_max + 31) // 32
    padded = torch.zeros(dense.shape[0], words * 32, dtype=torch.int64, device=dense.device)
    padded[:, :q_max] = dense.to(torch.int64)
    weights = torch.tensor([1 << b for b in range(32)], dtype=torch.int64, device=dense.device)
    packed = (padded.view(-1, words, 32) * weights).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
