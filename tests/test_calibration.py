"""Sequential temperature scaling and calibration metrics (docs/algorithms.md section 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dspark
from dspark.calibration import (
    apply_sts,
    brier,
    calibration_report,
    ece,
    plot_reliability,
    roc_auc,
    sts,
    survival_labels,
)


def _rounds(n: int, g: int, over: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic rounds: true conditional acceptance p_k, sequential Bernoulli acceptance, and an
    over-confident head reporting sigmoid(over * logit(p_k))."""
    gen = torch.Generator().manual_seed(seed)
    logit_true = torch.randn(n, g, generator=gen) * 1.2 + torch.linspace(1.5, 0.5, g)
    accepted = torch.rand(n, g, generator=gen) < torch.sigmoid(logit_true)
    accept_len = accepted.int().cumprod(1).sum(1)
    return torch.sigmoid(over * logit_true), accept_len


def _ece_ref(pred: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Loop reference: 20 equal-width bins, right-closed last bin."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (pred >= lo) & ((pred < hi) if b < n_bins - 1 else (pred <= hi))
        if sel.any():
            total += sel.sum() / len(pred) * abs(pred[sel].mean() - y[sel].mean())
    return total


def _auc_ref(pred: np.ndarray, y: np.ndarray) -> float:
    """Pairwise definition: P(pred_pos > pred_neg) + 0.5 P(tie)."""
    pos, neg = pred[y > 0.5], pred[y <= 0.5]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def test_metrics_match_references():
    rng = np.random.default_rng(0)
    pred = np.round(rng.random(700), 2)  # rounded: ties for the AUC
    y = (rng.random(700) < pred).astype(float)
    assert ece(pred, y, 20) == pytest.approx(_ece_ref(pred, y, 20), abs=1e-12)
    assert roc_auc(pred, y) == pytest.approx(_auc_ref(pred, y), abs=1e-12)
    assert brier(pred, y) == pytest.approx(np.mean((pred - y) ** 2))
    assert np.isnan(roc_auc(pred, np.ones(700)))


def test_survival_labels_and_mask():
    label, mask = survival_labels(torch.tensor([0, 2, 3]), 3, proposed=torch.tensor([1, 3, 3]))
    assert label.tolist() == [[False] * 3, [True, True, False], [True] * 3]
    assert mask.tolist() == [[True, False, False], [True] * 3, [True] * 3]


def test_sts_lowers_ece_on_overconfident_scores():
    conf, acc = _rounds(20_000, 7, over=2.5, seed=0)
    res = sts(conf[:10_000], acc[:10_000])
    # the fitted temperature undoes the over-confidence at the first position (T ~ 2.5)
    assert 2.0 < float(res.temperatures[0]) < 3.2
    assert (res.ece_after < res.ece_before).all()
    # held-out: ECE drops at every position, by a large factor overall
    before = calibration_report(conf[10_000:], acc[10_000:], temperatures=res.temperatures)
    e0, e1 = np.array(before["before"]["ece"]), np.array(before["after"]["ece"])
    assert (e1 < e0).all()
    assert e1.mean() < 0.35 * e0.mean()
    assert max(e1) < 0.03
    # order-preserving per position: AUC of each position's own confidence is unchanged,
    # and Brier improves
    cal = apply_sts(conf, res.temperatures)
    for k in range(7):
        assert roc_auc(cal[:, k], acc >= k + 1) == pytest.approx(roc_auc(conf[:, k], acc >= k + 1))
    assert np.mean(before["after"]["brier"]) < np.mean(before["before"]["brier"])


def test_sts_keeps_calibrated_scores_near_one():
    conf, acc = _rounds(20_000, 4, over=1.0, seed=1)
    res = sts(conf, acc)
    assert torch.allclose(res.temperatures, torch.ones(4, dtype=torch.float64), rtol=0.25)


def test_sts_respects_proposed_lengths():
    conf, acc = _rounds(6000, 5, over=2.0, seed=2)
    proposed = torch.minimum(torch.full_like(acc, 2), torch.full_like(acc, 5))
    res = sts(conf, torch.minimum(acc, proposed), proposed=proposed)
    assert torch.isnan(res.ece_before[2:]).all()  # no rounds verified positions 3..5
    assert (res.temperatures[2:] == 1).all()
    assert (res.ece_after[:2] < res.ece_before[:2]).all()


def test_plot_reliability_writes_a_file(tmp_path):
    pytest.importorskip("matplotlib")
    conf, acc = _rounds(2000, 4, over=2.0, seed=3)
    res = sts(conf, acc)
    out = tmp_path / "rel.png"
    plot_reliability(conf, acc, out, temperatures=res.temperatures)
    assert out.stat().st_size > 1000


def test_calibration_is_importable_from_dspark():
    assert dspark.calibration.sts is sts


@pytest.mark.parametrize(
    ("conf", "acc", "match"),
    [
        (torch.full((3, 2), float("nan")), torch.zeros(3), "confidences: expected probabilities"),
        (torch.full((3, 2), 1.5), torch.zeros(3), "confidences: expected probabilities"),
        (torch.zeros(0, 2), torch.zeros(0), "non-empty"),
        (torch.full((3,), 0.5), torch.zeros(3), r"expected shape \(N, G\)"),
        (
            torch.full((3, 2), 0.5),
            torch.tensor([0, 1, 3]),
            r"accept_len: expected values in \[0, 2\]",
        ),
        (torch.full((3, 2), 0.5), torch.zeros(4), r"accept_len: expected shape \(3,\)"),
    ],
)
def test_sts_rejects_bad_input(conf, acc, match):
    with pytest.raises(ValueError, match=match):
        sts(conf, acc)


def test_sts_rejects_bad_grid_and_temperatures():
    conf, acc = _rounds(100, 2, over=1.0, seed=4)
    with pytest.raises(ValueError, match="grid"):
        sts(conf, acc, grid=np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="temperatures"):
        apply_sts(conf, torch.tensor([1.0]))
