"""Tree layouts for verification: converters to dspark's ``parents`` form and attention masks.

dspark's form (``verify_batch``): per request, nodes in topological order with ``parents[i] < i``
(-1 = the anchor) and siblings tried in index order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch

from dspark._checks import as_int, as_int_tensor, check_tensor

__all__ = [
    "SGLangTree",
    "tree_attention_mask",
    "tree_from_choices",
    "tree_from_sglang",
    "tree_positions",
    "tree_query_layout",
]


def _indptr(name: str, t: object) -> torch.Tensor:
    """Check a CSR offsets tensor (1-D, integer, starts at 0, non-decreasing); return it (int64)."""
    check_tensor(name, t, shape=(None,))
    assert isinstance(t, torch.Tensor)
    t = as_int_tensor(name, t, torch.int64)
    if t.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one element (R + 1), got 0")
    if int(t[0]) != 0:
        raise ValueError(f"{name}: expected {name}[0] == 0, got {int(t[0])}")
    step = t[1:] - t[:-1]
    if bool((step < 0).any()):
        r = int(torch.nonzero(step < 0)[0, 0])
        raise ValueError(
            f"{name}: must be non-decreasing, got {name}[{r}] = {int(t[r])} > "
            f"{name}[{r + 1}] = {int(t[r + 1])}"
        )
    return t


def _parents(t: object, total: int) -> torch.Tensor:
    """Check local parents: integer, shape (total,), -1 <= p (the local bound is checked later)."""
    check_tensor("parents", t, shape=(total,))
    assert isinstance(t, torch.Tensor)
    return as_int_tensor("parents", t, torch.int64)


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
    if not isinstance(choices, Sequence) or not all(isinstance(ch, Sequence) for ch in choices):
        raise TypeError(
            f"choices: expected a sequence of paths (sequences of int), got {choices!r}"
        )
    ranks = {tuple(as_int("choices", c, -(2**31), 2**31 - 1) for c in ch) for ch in choices}
    order = sorted(ranks, key=lambda c: (len(c), c))
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
    nxt = as_int_tensor("retrive_next_token", retrive_next_token, torch.int64).cpu().tolist()
    sib = as_int_tensor("retrive_next_sibling", retrive_next_sibling, torch.int64).cpu().tolist()
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


def tree_query_layout(
    parents: torch.Tensor | None, draft_indptr: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert :func:`verify_batch`'s node layout to :func:`verify_attention`'s query layout.

    A verification forward runs ``[anchor, node_0, ..., node_{n-1}]`` per request; this makes the
    anchor query 0 (parent -1) and shifts every node's parent by one (a root node's parent becomes
    the anchor).

    Parameters
    ----------
    parents : Tensor (N,) int32, optional
        Local parent per draft node (-1 = the anchor); None = chains.
    draft_indptr : Tensor (R + 1,) int32

    Returns
    -------
    query_parents : Tensor (N + R,) int32
        Local parent per query token (-1 for each anchor).
    qo_indptr : Tensor (R + 1,) int32
        ``draft_indptr[r] + r``: request r owns queries ``[qo_indptr[r], qo_indptr[r + 1])``.

    Examples
    --------
    >>> qp, ip = tree_query_layout(torch.tensor([-1, -1, 0], dtype=torch.int32),
    ...                            torch.tensor([0, 3], dtype=torch.int32))
    >>> qp.tolist(), ip.tolist()
    ([-1, 0, 0, 1], [0, 4])
    """
    ip = _indptr("draft_indptr", draft_indptr).cpu().tolist()
    par = None if parents is None else _parents(parents, ip[-1]).cpu().tolist()
    out: list[int] = []
    for r in range(len(ip) - 1):
        n0, n = ip[r], ip[r + 1] - ip[r]
        out.append(-1)
        for i in range(n):
            p = (i - 1) if par is None else par[n0 + i]
            if not -1 <= p < i:
                raise ValueError(
                    f"parents: expected -1 <= parents[i] < i, got parents[{n0 + i}] = {p}"
                )
            out.append(p + 1)
    qo_indptr = as_int_tensor(
        "draft_indptr", torch.tensor(ip, dtype=torch.int64) + torch.arange(len(ip)), torch.int32
    )
    return (
        torch.tensor(out, dtype=torch.int32, device=draft_indptr.device),
        qo_indptr.to(draft_indptr.device),
    )


def tree_attention_mask(
    parents: torch.Tensor | None,
    draft_indptr: torch.Tensor | None = None,
    layout: Literal["qlen_bitpacked", "dense"] = "qlen_bitpacked",
    *,
    qo_indptr: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ancestor masks over each request's query tokens (the compact mask of verification attention).

    Query ``j`` is visible to query ``i`` when ``j`` is ``i`` or one of its ancestors; the KV prefix
    is always visible and not part of the mask. Two layouts of ``parents`` are accepted:

    - ``draft_indptr`` (:func:`verify_batch`'s layout): per draft node, -1 = the anchor; the
      queries are ``[anchor, node_0, ..., node_{n-1}]`` (the anchor is every node's ancestor).
    - ``qo_indptr=`` (:func:`verify_attention`'s layout): per query token, -1 = no parent among
      the queries (sees only the prefix and itself).

    Parameters
    ----------
    parents : Tensor (N,) or (T,) int32, optional
        Local parents; None = chains (causal).
    draft_indptr : Tensor (R + 1,) int32, optional
    layout : {"qlen_bitpacked", "dense"}
        "qlen_bitpacked": int32 words, bit ``j % 32`` of word ``j // 32`` of row ``i``;
        "dense": bool.
    qo_indptr : Tensor (R + 1,) int32, optional
        Give this instead of ``draft_indptr`` for per-query parents.

    Returns
    -------
    Tensor (T, W) int32 or (T, Q) bool
        One row per query token (requests concatenated; ``T = N + R`` in the draft layout), ``Q``
        = the largest request's query count and ``W = ceil(Q / 32)``.

    Examples
    --------
    >>> ip = torch.tensor([0, 3], dtype=torch.int32)
    >>> tree_attention_mask(torch.tensor([-1, 0, 0], dtype=torch.int32), qo_indptr=ip).tolist()
    [[1], [3], [5]]
    """
    if layout not in ("qlen_bitpacked", "dense"):
        raise ValueError(f"layout: expected 'qlen_bitpacked' or 'dense', got {layout!r}")
    if (draft_indptr is None) == (qo_indptr is None):
        raise ValueError("tree_attention_mask: give exactly one of draft_indptr and qo_indptr")
    if draft_indptr is not None:
        parents, qo_indptr = tree_query_layout(parents, draft_indptr)
    assert qo_indptr is not None
    ip = _indptr("qo_indptr", qo_indptr).cpu().tolist()
    par = None if parents is None else _parents(parents, ip[-1]).cpu().tolist()
    q_max = max((ip[r + 1] - ip[r] for r in range(len(ip) - 1)), default=1)
    dense = torch.zeros(ip[-1], max(q_max, 1), dtype=torch.bool)
    for r in range(len(ip) - 1):
        q0, n = ip[r], ip[r + 1] - ip[r]
        for i in range(n):
            p = (i - 1) if par is None else par[q0 + i]
            if not -1 <= p < i:
                raise ValueError(
                    f"parents: expected -1 <= parents[i] < i, got parents[{q0 + i}] = {p}"
                )
            if p >= 0:
                dense[q0 + i] = dense[q0 + p]
            dense[q0 + i, i] = True
    dense = dense.to(qo_indptr.device)
    if layout == "dense":
        return dense
    words = (dense.shape[1] + 31) // 32
    padded = torch.zeros(dense.shape[0], words * 32, dtype=torch.int64, device=dense.device)
    padded[:, : dense.shape[1]] = dense.to(torch.int64)
    weights = torch.tensor([1 << b for b in range(32)], dtype=torch.int64, device=dense.device)
    packed = (padded.view(-1, words, 32) * weights).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def tree_positions(
    parents: torch.Tensor | None, qo_indptr: torch.Tensor, kv_len: torch.Tensor
) -> torch.Tensor:
    """Logical positions (for RoPE) of verification queries: ``prefix_len + depth``.

    Parameters
    ----------
    parents : Tensor (T,) int32, optional
        Local parent per query token as in :func:`verify_attention` (-1 = depth 0); None = chains
        (depth = index in the request).
    qo_indptr : Tensor (R + 1,) int32
    kv_len : Tensor (R,) int
        Cached slots per request including its queries, so ``prefix_len = kv_len - qo_len``.

    Returns
    -------
    Tensor (T,) int64
        On the device of ``qo_indptr``; computed with tensor ops (no per-token Python loop).

    Examples
    --------
    >>> tree_positions(torch.tensor([-1, 0, 0, 1], dtype=torch.int32),
    ...                torch.tensor([0, 4], dtype=torch.int32), torch.tensor([10])).tolist()
    [6, 7, 7, 8]
    """
    ip = _indptr("qo_indptr", qo_indptr)
    r = ip.shape[0] - 1
    check_tensor("kv_len", kv_len, shape=(r,))
    dev = qo_indptr.device
    qo_len = ip[1:] - ip[:-1]
    kv = as_int_tensor("kv_len", kv_len, torch.int64).to(dev)
    if bool((kv < qo_len).any()):
        i = int(torch.nonzero(kv < qo_len)[0, 0])
        raise ValueError(
            f"kv_len: kv_len[{i}] = {int(kv[i])} is smaller than the request's query count "
            f"qo_len = {int(qo_len[i])} (kv_len includes the queries' own K/V)"
        )
    t = int(ip[-1])
    req = torch.repeat_interleave(torch.arange(r, device=dev), qo_len, output_size=t)
    local = torch.arange(t, device=dev) - ip[:-1][req]
    prefix = kv - qo_len
    if parents is None:
        return prefix[req] + local
    p = _parents(parents, t).to(dev)
    if bool(((p < -1) | (p >= local)).any()):
        raise ValueError("parents: expected -1 <= parents[t] < local index of query t")
    glob = torch.where(p >= 0, ip[:-1][req] + p, -1)
    depth = torch.zeros(t, dtype=torch.int64, device=dev)
    anc = glob
    while bool((anc >= 0).any()):  # one step up the tree per pass: depth-many passes
        depth += (anc >= 0).to(torch.int64)
        anc = torch.where(anc >= 0, glob[anc.clamp(min=0)], -1)
    return prefix[req] + depth
