"""The benchmark baseline (tests/reference/verify_vectorized.py) is itself correct."""

from __future__ import annotations

import numpy as np
import torch

import dspark
from tests.reference.verify_vectorized import verify_chain_torch, verify_tree_torch
from tests.stats import chi2_pvalue


def test_vectorized_reference_greedy_equals_dspark():
    g = torch.Generator().manual_seed(0)
    lens = [3, 0, 5, 2, 7]
    indptr = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32)
    target = torch.randn(sum(lens) + 5, 300, generator=g)
    drafts = target[: sum(lens)].argmax(-1)  # mostly rejected: rows don't line up with nodes
    drafts[::3] = torch.randint(0, 300, drafts[::3].shape, generator=g)
    acc, final = verify_chain_torch(target, drafts, indptr)
    res = dspark.verify_batch(target, drafts, indptr)
    assert torch.equal(acc, res.accept_len) and torch.equal(final, res.final_token)


def test_vectorized_reference_sampled_is_lossless():
    rng = np.random.default_rng(0)
    V, R = 8, 100_000
    p_logits, q_logits = rng.normal(size=V), rng.normal(size=V)
    q = np.exp(q_logits) / np.exp(q_logits).sum()
    tok = torch.tensor(rng.choice(V, size=R, p=q))
    target = torch.tensor(np.tile(p_logits, (2 * R, 1)), dtype=torch.float32)
    acc, final = verify_chain_torch(
        target,
        tok,
        torch.arange(0, R + 1, dtype=torch.int32),
        draft_probs=torch.tensor(np.tile(q, (R, 1)), dtype=torch.float32),
        temperature=torch.ones(R),
        generator=torch.Generator().manual_seed(0),
    )
    first = torch.where(acc > 0, tok.int(), final).numpy()
    p = np.exp(p_logits) / np.exp(p_logits).sum()
    assert chi2_pvalue(np.bincount(first, minlength=V), p) > 1e-3


def test_vectorized_tree_reference_greedy_equals_dspark():
    g = torch.Generator().manual_seed(1)
    parents = torch.tensor([-1, -1, 0, 0, 1, 2, -1, 0, 1], dtype=torch.int32)
    indptr = torch.tensor([0, 6, 9], dtype=torch.int32)
    target = torch.randn(9 + 2, 50, generator=g) * 0.1
    tokens = torch.randint(0, 3, (9,), generator=g)
    target[:, :3] += 3.0  # the target's argmax is often one of the drafted ids
    acc, final = verify_tree_torch(target, tokens, indptr, parents)
    res = dspark.verify_batch(target, tokens, indptr, parents=parents)
    assert torch.equal(acc, res.accept_len) and torch.equal(final, res.final_token)
