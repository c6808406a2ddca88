"""SamplingParams: batching to per-request tensors, and the ops' ``sampling=`` keyword."""

from __future__ import annotations

import pytest
import torch

import dspark
from dspark import SamplingParams


def test_sampling_params_batch_from_list():
    b = SamplingParams.batch(
        [SamplingParams(temperature=0.0, stop=[2]), SamplingParams(top_k=5, min_p=1.0, seed=7)]
    )
    assert b.temperature.tolist() == [0.0, 1.0]
    assert b.top_k.dtype == torch.int32 and b.top_k.tolist() == [0, 5]
    assert b.min_p.tolist() == [0.0, 1.0]
    assert int(b.seed[1]) == 7 and b.seed.dtype == torch.int64
    assert b.offset.tolist() == [0, 0] and b.max_tokens is None
    assert b.stop == [frozenset({2}), frozenset()]


def test_sampling_params_broadcast_and_tensors():
    b = SamplingParams(temperature=torch.tensor([0.5, 1.0, 0.0]), seed=3).batch(
        SamplingParams(temperature=torch.tensor([0.5, 1.0, 0.0]), seed=3)
    )
    assert b.temperature.tolist() == [0.5, 1.0, 0.0] and b.seed.tolist() == [3, 3, 3]
    assert SamplingParams.batch(SamplingParams(), 4).top_p.tolist() == [1.0] * 4


@pytest.mark.parametrize(
    ("params", "exc", "match"),
    [
        (SamplingParams(top_k=2.5), TypeError, "top_k"),
        (SamplingParams(seed=2**64), ValueError, "seed"),
        ([SamplingParams(max_tokens=3), SamplingParams()], ValueError, "max_tokens"),
        ([], TypeError, "params"),
    ],
)
def test_sampling_params_rejects(params, exc, match):
    with pytest.raises(exc, match=match):
        SamplingParams.batch(params)


def _batch():
    g = torch.Generator().manual_seed(0)
    V, lens = 12, [3, 2]
    target = torch.randn(sum(lens) + 2, V, generator=g)
    drafts = torch.randint(0, V, (sum(lens),), generator=g)
    return target, drafts, torch.tensor([0, 3, 5], dtype=torch.int32)


def test_verify_batch_sampling_equals_keywords():
    target, drafts, indptr = _batch()
    params = [
        SamplingParams(temperature=0.8, top_k=6, top_p=0.9, seed=11, offset=2),
        SamplingParams(temperature=0.0, min_p=0.1, seed=12, offset=5),
    ]
    a = dspark.verify_batch(target, drafts, indptr, sampling=params)
    b = dspark.verify_batch(
        target,
        drafts,
        indptr,
        temperature=torch.tensor([0.8, 0.0]),
        top_k=torch.tensor([6, 0], dtype=torch.int32),
        top_p=torch.tensor([0.9, 1.0]),
        min_p=torch.tensor([0.0, 0.1]),
        seed=torch.tensor([11, 12]),
        offset=torch.tensor([2, 5]),
    )
    for x, y in zip(a, b, strict=True):
        assert (x is None and y is None) or torch.equal(x, y)
    with pytest.raises(ValueError, match="sampling"):
        dspark.verify_batch(target, drafts, indptr, sampling=params, temperature=1.0)


def test_draft_step_sampling_equals_keywords():
    g = torch.Generator().manual_seed(1)
    R, G, V, r = 2, 3, 20, 4
    args = (torch.randn(R, G, V, generator=g), torch.randn(V, r, generator=g))
    args = (*args, torch.randn(V, r, generator=g), torch.tensor([1, 2]))
    a = dspark.draft_step(*args, sampling=SamplingParams(temperature=0.7, seed=5, offset=1))
    b = dspark.draft_step(*args, temperature=0.7, seed=5, offset=1)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.draft_logits, b.draft_logits)
    with pytest.raises(ValueError, match="sampling"):
        dspark.draft_step(*args, sampling=SamplingParams(), seed=1)
