"""Eval metrics against hand-computed rounds (tau, conditional acceptance, survival, sweep)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from dspark.eval import (
    RoundRecord,
    acceptance_summary,
    conditional_acceptance,
    cumulative_survival,
    records_from_rounds,
    threshold_sweep,
)

# (proposed, accepted, emitted, confidences); the last round was cut at a stop token.
ROUNDS = [
    RoundRecord(4, 4, 5, [0.9, 0.8, 0.7, 0.6]),
    RoundRecord(4, 2, 3, [0.9, 0.5, 0.9, 0.9]),
    RoundRecord(4, 0, 1, [0.3, 0.9, 0.9, 0.9]),
    RoundRecord(2, 1, 2, [0.8, 0.4]),
    RoundRecord(3, 3, 2, [0.95, 0.95, 0.95]),
]


def test_acceptance_summary_hand_computed():
    s = acceptance_summary(ROUNDS, 4)
    assert s["rounds"] == 5
    assert s["tau"] == pytest.approx(13 / 5)
    assert s["proposed"] == pytest.approx(17 / 5)
    assert s["accepted"] == pytest.approx(10 / 5)
    assert s["acceptance_rate"] == pytest.approx(10 / 17)
    assert s["verify_rate"] == pytest.approx(13 / 22)


def test_conditional_acceptance_is_direct_not_a_ratio_of_survivals():
    cond = conditional_acceptance(ROUNDS, 5)
    assert cond[:4] == pytest.approx([4 / 5, 3 / 4, 2 / 3, 1 / 1])
    assert math.isnan(cond[4])  # no round proposed 5 drafts
    surv = cumulative_survival(ROUNDS, 4)
    assert surv == pytest.approx([4 / 5, 3 / 5, 2 / 4, 1 / 3])
    # With ragged proposal lengths the survival ratio differs from the direct conditional.
    assert surv[2] / surv[1] != pytest.approx(cond[2])


def test_threshold_sweep_cumulative_hand_computed():
    rows = threshold_sweep(ROUNDS, [0.0, 0.5, 0.85])
    # t=0 verifies everything
    assert rows[0]["proposed"] == pytest.approx(17 / 5)
    assert rows[0]["accepted"] == pytest.approx(10 / 5)
    assert rows[0]["rejected"] == pytest.approx(7 / 5)
    assert rows[0]["acceptance_rate"] == pytest.approx(10 / 17)
    # t=0.5, cumulative products: lengths 3, 1, 0, 1, 3; accepted min(a, L) = 3, 1, 0, 1, 3
    assert rows[1]["proposed"] == pytest.approx(8 / 5)
    assert rows[1]["accepted"] == pytest.approx(8 / 5)
    assert rows[1]["rejected"] == 0
    assert rows[1]["tokens_per_step"] == pytest.approx(13 / 5)
    assert rows[1]["acceptance_rate"] == 1.0
    # t=0.85: lengths 1, 1, 0, 0, 3
    assert rows[2]["proposed"] == pytest.approx(5 / 5)
    assert rows[2]["accepted"] == pytest.approx(5 / 5)


def test_threshold_sweep_per_position_hand_computed():
    (row,) = threshold_sweep(ROUNDS, [0.5], mode="per_position")
    # per-position c_k >= 0.5: lengths 4, 4, 0, 1, 3; accepted 4, 2, 0, 1, 3
    assert row["proposed"] == pytest.approx(12 / 5)
    assert row["accepted"] == pytest.approx(10 / 5)
    assert row["rejected"] == pytest.approx(2 / 5)
    assert row["acceptance_rate"] == pytest.approx(10 / 12)


def test_records_from_rounds_splits_requests():
    stats = [
        SimpleNamespace(
            requests=[0, 1],
            proposed=[2, 2],
            accepted=[2, 0],
            emitted=[3, 1],
            confidence=[[0.9, 0.8], [0.1, 0.2]],
        ),
        SimpleNamespace(requests=[1], proposed=[1], accepted=[1], emitted=[2], confidence=None),
    ]
    out = records_from_rounds(stats, 2)
    assert out[0] == [RoundRecord(2, 2, 3, [0.9, 0.8])]
    assert out[1] == [RoundRecord(2, 0, 1, [0.1, 0.2]), RoundRecord(1, 1, 2, None)]
    assert RoundRecord.from_json(out[0][0].to_json()) == out[0][0]


@pytest.mark.parametrize(
    ("args", "match"),
    [((2, 3, 3, None), "accepted"), ((2, 1, 3, None), "emitted"), ((2, 1, 2, [0.5]), "confidence")],
)
def test_round_record_rejects_inconsistent_values(args, match):
    with pytest.raises(ValueError, match=match):
        RoundRecord(*args)


def test_threshold_sweep_bad_input():
    with pytest.raises(ValueError, match="confidences"):
        threshold_sweep([RoundRecord(2, 1, 2, None)], [0.5])
    with pytest.raises(ValueError, match="mode"):
        threshold_sweep(ROUNDS, [0.5], mode="max")
    with pytest.raises(ValueError, match="thresholds"):
        threshold_sweep(ROUNDS, [1.5])
    with pytest.raises(ValueError, match="round record"):
        RoundRecord.from_json([1, 2])


def test_threshold_replay_is_exact_per_round():
    """The sweep's premise: verifying a prefix of length L of the same round (same Philox seed
    and offset) accepts exactly min(accepted, L) drafts, because each verdict depends only on
    its own position."""
    import torch

    from dspark import verify_batch

    g, v, trials = 5, 16, 40
    gen = torch.Generator().manual_seed(0)
    for t in range(trials):
        target = torch.randn(g + 1, v, generator=gen) * 2
        draft_logits = target[:g] + torch.randn(g, v, generator=gen)
        drafts = torch.multinomial(torch.softmax(draft_logits, -1), 1, generator=gen)[:, 0]
        full = verify_batch(
            target,
            drafts,
            torch.tensor([0, g], dtype=torch.int32),
            draft_logits=draft_logits,
            temperature=1.0,
            seed=t,
            offset=3,
            max_depth=g,
        )
        a = int(full.accept_len[0])
        for cut in range(g + 1):
            part = verify_batch(
                target[: cut + 1],
                drafts[:cut],
                torch.tensor([0, cut], dtype=torch.int32),
                draft_logits=draft_logits[:cut],
                temperature=1.0,
                seed=t,
                offset=3,
                max_depth=max(cut, 1),
            )
            assert int(part.accept_len[0]) == min(a, cut), (t, cut)


def test_records_from_a_real_run_match_generation_statistics():
    """records_from_rounds + conditional_acceptance agree with GenerationOutput's own counters,
    and DSpark rounds carry one confidence per verified draft."""
    import torch

    import dspark
    from dspark.models import build_drafter
    from tests._tiny import tiny_qwen3

    target = tiny_qwen3(vocab=256, layers=2, logit_scale=20.0)
    drafter = build_drafter("dspark", target, num_layers=1, markov_rank=16, block_size=4)
    ids = torch.randint(0, 256, (3, 5))
    out = dspark.generate(target, drafter, ids, max_new_tokens=10, seed=0)
    recs = records_from_rounds(out.rounds, 3)
    flat = [r for rs in recs for r in rs]
    assert conditional_acceptance(flat, 4) == pytest.approx(out.position_acceptance(4), nan_ok=True)
    assert acceptance_summary(flat, 4)["tau"] == pytest.approx(out.acceptance_length)
    assert [sum(r.emitted for r in rs) + 1 for rs in recs] == out.num_generated.tolist()
    assert all(
        r.confidence is not None and len(r.confidence) == r.proposed for r in flat if r.proposed > 0
    )


# --- conditional confidence AUC ---------------------------------------------------------------


def test_conditional_auc_hand_computed():
    from dspark.eval import conditional_auc

    # position 1: all 5 rounds; accepted (0.9, 0.9, 0.8, 0.95) vs rejected 0.3 -> 1.0.
    # position 2: rounds with accepted >= 1 and proposed >= 2 (4 of them): accepted
    # (0.8, 0.5, 0.95) vs rejected 0.4 -> 1.0. position 3: accepted (0.7, 0.95) vs 0.9 -> 0.5.
    auc = conditional_auc(ROUNDS, 5)
    assert auc[:3] == [1.0, 1.0, 0.5]
    assert math.isnan(auc[3])  # one round reaches position 4 eligible, and it was accepted
    assert math.isnan(auc[4])  # no round proposed 5 drafts


def test_conditional_auc_matches_the_pairwise_reference():
    import numpy as np

    from dspark.eval import conditional_auc
    from tests.reference.auc import conditional_auc_ref

    rng = np.random.default_rng(3)
    rounds = []
    for _ in range(400):
        n = int(rng.integers(0, 6))
        c = np.round(rng.random(n), 1).tolist()  # rounded: ties
        a = 0
        while a < n and rng.random() < 0.3 + 0.6 * c[a]:  # acceptance tied to the score
            a += 1
        q = np.round(rng.random(n), 2).tolist()
        rounds.append(RoundRecord(n, a, a + 1, c, q))
    for score in ("confidence", "draft_prob"):
        got = conditional_auc(rounds, 6, score=score)
        rows = [(r.proposed, r.accepted, getattr(r, score)) for r in rounds]
        want = [conditional_auc_ref(rows, k) for k in range(1, 7)]
        assert got[:5] == pytest.approx(want[:5], abs=1e-12)
        assert math.isnan(got[5]) and math.isnan(want[5])
    assert conditional_auc(rounds, 1)[0] > 0.6  # the score is informative by construction


def test_acceptance_summary_auc_uses_the_head_else_the_draft_probability():
    head = acceptance_summary(ROUNDS, 3)
    assert head["auc_score"] == "confidence" and head["auc"] == [1.0, 1.0, 0.5]
    probs = [RoundRecord(r.proposed, r.accepted, r.emitted, None, r.confidence) for r in ROUNDS]
    s = acceptance_summary(probs, 3)
    assert s["auc_score"] == "draft_prob" and s["auc"] == [1.0, 1.0, 0.5]
    bare = [RoundRecord(r.proposed, r.accepted, r.emitted) for r in ROUNDS]
    s = acceptance_summary(bare, 3)
    assert s["auc_score"] is None and all(math.isnan(x) for x in s["auc"])


def test_round_record_json_round_trip_with_and_without_draft_probs():
    r = RoundRecord(2, 1, 2, None, [0.25, 0.5])
    assert RoundRecord.from_json(r.to_json()) == r
    old = [3, 1, 2, [0.9, 0.8, 0.7]]  # the 4-field rows cached before draft_prob
    assert RoundRecord.from_json(old) == RoundRecord(3, 1, 2, [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="draft_prob: expected 2 values"):
        RoundRecord(2, 1, 2, None, [0.5])
    from dspark.eval import conditional_auc

    with pytest.raises(ValueError, match="score"):
        conditional_auc(ROUNDS, 2, score="entropy")
