"""plain_generate (one target forward per token on the speculative generator's runner) and the
generator's recorded draft probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dspark
from dspark.generation.plain import plain_generate, resolve_engine
from tests._tiny import OracleDrafter, greedy_reference, padded_prompts, tiny_qwen3
from tests.stats import chi2_pvalue


@pytest.mark.parametrize("engine", ["paged", "hf"])
def test_plain_greedy_equals_the_reference_with_limits_and_stops(peaked_target, engine):
    ids, mask = padded_prompts()
    ref = [
        greedy_reference(peaked_target, ids[b][mask[b].bool()][None], 12)[0, -12:].tolist()
        for b in range(3)
    ]
    stop = ref[1][4]
    first = ref[1].index(stop)
    out = plain_generate(
        peaked_target,
        ids,
        mask,
        engine=engine,
        max_new_tokens=[12, 12, 5],
        temperature=0.0,
        stop_token_ids=[[], [stop], []],
        pad_token_id=-1,
    )
    assert out.num_generated.tolist() == [12, first + 1, 5]
    assert out.sequences[0, 7:].tolist() == ref[0]
    assert out.sequences[1, 7 : 8 + first].tolist() == ref[1][: first + 1]
    assert out.sequences[2, 7:12].tolist() == ref[2][:5]
    assert (out.sequences[1, 8 + first :] == -1).all() and (out.sequences[2, 12:] == -1).all()
    assert torch.equal(out.sequences[:, :7], ids) and out.rounds == []


def test_plain_sampling_is_seeded_and_engine_independent(peaked_target):
    ids, mask = padded_prompts()
    kw = {"max_new_tokens": 10, "temperature": 1.0, "seed": 5}
    a = plain_generate(peaked_target, ids, mask, engine="paged", **kw)
    b = plain_generate(peaked_target, ids, mask, engine="paged", **kw)
    c = plain_generate(peaked_target, ids, mask, engine="hf", **kw)
    d = plain_generate(peaked_target, ids, mask, engine="paged", **{**kw, "seed": 6})
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.sequences, c.sequences)
    assert not torch.equal(a.sequences, d.sequences)


def test_plain_sampling_follows_the_target_distribution():
    """4000 independent requests: the first token (from the prefill) against softmax of the
    prompt's last logits, the second (from the decode loop) after the most frequent first
    token against softmax of the logits after it; chi-square tests at alpha 1e-4."""
    target = tiny_qwen3(vocab=64, layers=2, logit_scale=10.0)
    n = 4000
    prompt = torch.tensor([[3, 14, 15, 9]])
    out = plain_generate(target, prompt.expand(n, -1), max_new_tokens=2, temperature=1.0, seed=7)
    seqs = out.sequences
    with torch.no_grad():
        p1 = target(prompt).logits[0, -1].double().softmax(-1)
    assert chi2_pvalue(np.bincount(seqs[:, 4].numpy(), minlength=64), p1.numpy()) > 1e-4
    first = int(torch.mode(seqs[:, 4]).values)
    rows = seqs[seqs[:, 4] == first]
    with torch.no_grad():
        p2 = target(torch.tensor([[3, 14, 15, 9, first]])).logits[0, -1].double().softmax(-1)
    assert rows.shape[0] > 400
    counts = np.bincount(rows[:, 5].numpy(), minlength=64)
    assert chi2_pvalue(counts, p2.numpy()) > 1e-4


def test_plain_rejects_bad_engines():
    target = tiny_qwen3(vocab=64, layers=1)
    ids = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="engine: expected 'auto', 'paged' or 'hf', got 'vllm'"):
        plain_generate(target, ids, engine="vllm", max_new_tokens=2)
    target.config.head_dim = 16  # no verify_attention kernel for it
    assert resolve_engine(target, "auto") == "hf"
    with pytest.raises(ValueError, match="engine: 'paged' needs a target head dim"):
        resolve_engine(target, "paged")
    with pytest.raises(TypeError, match="max_new_tokens"):
        plain_generate(target, ids)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generator_records_draft_probabilities(peaked_target, temperature):
    """An oracle with scale 0 drafts from the uniform distribution: every q(d_k) is 1/V."""
    drafter = OracleDrafter(peaked_target, block_size=3, scale=0.0)
    ids, mask = padded_prompts()
    drafter.first_tokens = [int(ids[b][mask[b].bool()][0]) for b in range(3)]
    gen = dspark.SpeculativeGenerator(peaked_target, drafter, record_draft_probs=True)
    out = gen.generate(ids, mask, max_new_tokens=8, temperature=temperature, seed=2)
    drafted = [r for r in out.rounds if max(r.proposed) > 0]
    assert drafted
    for r in drafted:
        assert r.draft_prob is not None and r.confidence is None
        assert [len(q) for q in r.draft_prob] == r.proposed
        assert np.allclose([x for q in r.draft_prob for x in q], 1 / 256, rtol=1e-5)
    plain = dspark.SpeculativeGenerator(peaked_target, drafter)
    assert all(
        r.draft_prob is None
        for r in plain.generate(ids, mask, max_new_tokens=8, temperature=temperature).rounds
    )
