"""At temperature 1 (and with top-k), speculative output is distributed exactly as the target's.

Setup: a tiny Qwen3 target with V = 16, one prompt repeated N = 4000 times in one batch,
5 new tokens with 3 drafts per round. The first token comes from the prefill; the next two are
the first speculative round, so the test looks at the joint law of generated tokens 2 and 3
(256 cells, cells with expected count < 5 pooled), computed exactly by enumerating token 1.
Chi-square goodness of fit at alpha = 1e-3; the test asserts its own power (> 0.9) to detect a
total-variation error of 0.05 moved between the two likeliest cells, so it can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import dspark
from dspark.models import build_drafter
from tests._tiny import OracleDrafter, tiny_qwen3
from tests.reference.draft_step import process_row_ref

ALPHA, N, V = 1e-3, 4000, 16
PROMPT = [3, 1, 4]
TREE = [(0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0)]  # depth 3, 7 nodes


@pytest.fixture(scope="module")
def small_target():
    return tiny_qwen3(vocab=V, layers=2, logit_scale=40.0, seed=3)


def _exact_joint(target, temperature: float, top_k: int) -> np.ndarray:
    """P(t2, t3) = sum_t1 p(t1) p(t2 | t1) p(t3 | t1, t2) under the processed target."""
    grid = torch.cartesian_prod(torch.arange(V), torch.arange(V))  # (t1, t2)
    seqs = torch.cat([torch.tensor(PROMPT).repeat(V * V, 1), grid], dim=1)
    with torch.no_grad():
        logits = target(seqs).logits.double()

    def proc(row):
        return torch.softmax(process_row_ref(row, temperature, top_k, 1.0), 0)

    p1 = proc(logits[0, len(PROMPT) - 1])
    joint = np.zeros((V, V))
    for i, (t1, t2) in enumerate(grid.tolist()):
        p2 = proc(logits[i, len(PROMPT)])
        p3 = proc(logits[i, len(PROMPT) + 1])
        joint[t2] += float(p1[t1]) * float(p2[t2]) * p3.numpy()
    return joint


def _power(probs: np.ndarray, tv: float = 0.05) -> float:
    p = np.sort(probs.ravel())[::-1]
    dof = int((p * N >= 5).sum())  # pooled tail adds one cell, minus one for the constraint
    lam = N * (tv**2 / p[0] + tv**2 / p[1])
    return float(stats.ncx2.sf(stats.chi2.ppf(1 - ALPHA, dof), dof, lam))


def _pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    counts, expected = counts.ravel().astype(float), probs.ravel() * N
    small = expected < 5
    c = np.append(counts[~small], counts[small].sum())
    e = np.append(expected[~small], expected[small].sum())
    if e[-1] == 0:
        assert c[-1] == 0, "tokens outside the target's support were emitted"
        c, e = c[:-1], e[:-1]
    return float(stats.chisquare(c, e * c.sum() / e.sum()).pvalue)


@pytest.mark.parametrize(
    ("drafter_kind", "temperature", "top_k"),
    [
        ("dspark", 1.0, 0),
        ("dspark-threshold", 1.0, 0),
        ("eagle3", 1.0, 0),
        ("eagle3-tree", 1.0, 0),
        ("eagle3-tree", 0.7, 6),
        ("oracle", 1.0, 0),
        ("oracle", 0.8, 5),
        ("dflash", 1.0, 4),
    ],
)
def test_generate_output_distribution_equals_target(small_target, drafter_kind, temperature, top_k):
    if drafter_kind == "oracle":
        drafter = OracleDrafter(small_target, block_size=3, scale=0.6)
        drafter.first_tokens = [PROMPT[0]] * N
    else:
        kind = drafter_kind.split("-")[0]
        extra = {"markov_rank": 8} if kind == "dspark" else {}
        drafter = build_drafter(kind, small_target, block_size=3, num_layers=1, **extra)
    if drafter_kind.endswith("-threshold"):
        # Make c_k depend strongly on the sampled previous token, so lengths vary per request.
        with torch.no_grad():
            drafter.head.w1.weight.normal_(0, 1.0)
            drafter.confidence.proj.weight.normal_(0, 1.0)
    ids = torch.tensor(PROMPT).repeat(N, 1)
    tree = TREE if drafter_kind.endswith("-tree") else None
    out = dspark.generate(
        small_target,
        drafter,
        ids,
        max_new_tokens=5,
        temperature=temperature,
        top_k=top_k,
        seed=1234,
        tree_choices=tree,
        confidence_threshold=0.2 if drafter_kind.endswith("-threshold") else None,
    )
    gen = out.sequences[:, len(PROMPT) :].numpy()
    assert (out.num_generated == 5).all()
    counts = np.zeros((V, V))
    np.add.at(counts, (gen[:, 1], gen[:, 2]), 1)
    probs = _exact_joint(small_target, temperature, top_k)
    assert abs(probs.sum() - 1) < 1e-9
    assert _power(probs) > 0.9, "test too weak for this target"
    first = out.rounds[0]
    if drafter_kind.endswith("-threshold"):
        assert len(set(first.proposed)) > 1  # the threshold really cut some proposals
    else:
        assert max(first.proposed) == (len(TREE) if tree else 3)
    assert sum(first.accepted) > 0
    assert _pvalue(counts, probs) > ALPHA
