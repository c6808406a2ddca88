"""The loop's host bookkeeping (dspark.generation.rounds) and the per-round statistics it feeds."""

from __future__ import annotations

import pytest
import torch

import dspark
from dspark.generation.inputs import RequestParams
from dspark.generation.rounds import Emitter, read_round
from dspark.models import build_drafter


def test_read_round_equals_separate_reads():
    g = torch.Generator().manual_seed(0)
    acc = torch.tensor([0, 3, 1, 2], dtype=torch.int32)
    tokens = torch.full((4, 4), -1, dtype=torch.int32)
    for r, a in enumerate(acc.tolist()):
        tokens[r, : a + 1] = torch.randint(0, 5000, (a + 1,), generator=g, dtype=torch.int32)
    conf = torch.rand(4, 6, generator=g)[:, ::2]  # a strided view: carried bit for bit
    for c in (None, conf):
        read = read_round(tokens, c)
        assert read.accepted == acc.tolist()
        assert read.tokens == [tokens[r, : a + 1].tolist() for r, a in enumerate(acc.tolist())]
        assert read.confidence == (None if c is None else conf.tolist())


def test_emitter_cuts_at_stop_tokens_and_limits():
    prm = RequestParams(
        input_ids=torch.zeros(3, 2, dtype=torch.int64),
        attention_mask=torch.ones(3, 2, dtype=torch.bool),
        max_new_tokens=torch.tensor([5, 2, 9]),
        temperature=torch.zeros(3),
        top_k=torch.zeros(3, dtype=torch.int32),
        top_p=torch.ones(3),
        stop_sets=[frozenset({7}), frozenset(), frozenset({1, 2})],
        pad_token_id=0,
    )
    em = Emitter(prm)
    ev = em.emit([0, 1, 2], [[3, 7, 4], [5, 6], [0]])
    assert [(e.request, e.tokens, e.finished) for e in ev] == [
        (0, [3, 7], True),
        (1, [5, 6], True),
        (2, [0], False),
    ]
    assert em.remaining([0, 1, 2]) == [3, 0, 8]
    ev = em.emit([2], [[4, 2, 9]])
    assert (ev[0].tokens, ev[0].finished) == ([4, 2], True)


@pytest.mark.parametrize("mode", ["all", "scheduler", "threshold"])
@pytest.mark.parametrize("engine", ["paged", "hf"])
def test_round_statistics_record_the_drafters_confidences(peaked_target, mode, engine):
    drafter = build_drafter("dspark", peaked_target, block_size=4, num_layers=1, markov_rank=16)
    proposed = []
    orig = drafter.propose

    def propose(*args, **kwargs):
        prop = orig(*args, **kwargs)
        proposed.append(prop.confidence.float().clone())
        return prop

    drafter.propose = propose
    kw = {
        "all": {},
        "scheduler": {"scheduler": lambda c: torch.arange(c.shape[0]) % (c.shape[1] + 1)},
        "threshold": {"confidence_threshold": 0.3},
    }[mode]
    gen = dspark.SpeculativeGenerator(peaked_target, drafter, engine=engine, **kw)
    ids = torch.randint(0, 256, (3, 5))
    out = gen.generate(ids, max_new_tokens=9, temperature=0.0)
    rounds = [r for r in out.rounds if r.confidence is not None]
    assert len(rounds) == len(proposed) > 2
    done = [1, 1, 1]  # the first token comes from the prefill
    for r in out.rounds:
        caps = [min(max(9 - done[q] - 1, 0), 4) for q in r.requests]
        if r.confidence is None:
            assert max(caps) == 0 and r.proposed == caps
        else:
            conf = proposed.pop(0)
            assert r.confidence == [c[:n] for c, n in zip(conf.tolist(), r.proposed, strict=True)]
            if mode == "threshold":
                want = (torch.cumprod(conf, 1) >= 0.3).long().cumprod(1).sum(1).tolist()
            elif mode == "scheduler":
                want = [i % (conf.shape[1] + 1) for i in range(len(caps))]
            else:
                want = caps
            assert r.proposed == [min(w, c) for w, c in zip(want, caps, strict=True)]
        for q, e in zip(r.requests, r.emitted, strict=True):
            done[q] += e
    assert done == out.num_generated.tolist() and not proposed
    if mode == "scheduler":
        assert any(len(set(r.proposed)) > 1 for r in out.rounds)  # ragged verification


def test_packed_forwards_of_both_runners_agree(peaked_target):
    from dspark.generation import TargetRunner
    from dspark.generation.paged_target import PagedTargetRunner

    ids = torch.randint(0, 256, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, :2] = 0
    paged = PagedTargetRunner(peaked_target, [0, 2], max_len=20, page_size=4)
    hf = TargetRunner(peaked_target, [0, 2])
    pa, pb = paged.prefill_packed(ids, mask), hf.prefill_packed(ids, mask)
    torch.testing.assert_close(pa.logits, pb.logits, atol=2e-4, rtol=1e-4)
    assert pa.logits.shape == (3, 256)
    real = mask.bool()
    torch.testing.assert_close(pa.features[real], pb.features[real], atol=2e-4, rtol=1e-4)
    tokens = torch.randint(0, 256, (3, 4))
    for counts, keep in (([4, 1, 3], [2, 1, 3]), ([2, 2, 2], [1, 2, 2])):
        fa = paged.forward_packed(tokens[:, : max(counts)], counts)
        fb = hf.forward_packed(tokens[:, : max(counts)], counts)
        assert fa.logits.shape == (sum(counts), 256)
        torch.testing.assert_close(fa.logits, fb.logits, atol=2e-4, rtol=1e-4)
        rows = torch.arange(max(counts))[None, :] < torch.tensor(counts)[:, None]
        torch.testing.assert_close(fa.features[rows], fb.features[rows], atol=2e-4, rtol=1e-4)
        assert not fa.features[~rows].any()
        paged.accept(keep)
        hf.accept(torch.tensor(keep))
    assert paged.lengths.tolist() == hf.lengths.tolist() == [9, 7, 11]
    paged.close()
