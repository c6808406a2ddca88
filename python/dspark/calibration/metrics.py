"""Calibration metrics for prefix-survival predictions: ECE (equal-width bins), ROC-AUC, Brier.

Conventions follow the DeepSpec confidence diagnostics (``docs/algorithms.md`` section 5): the
prediction at 1-based position k is the cumulative product ``prod_{i<=k} c_i``; the label is
whether the first k drafts were all accepted.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_numpy", "brier", "ece", "reliability_bins", "roc_auc", "survival_labels"]


def as_numpy(name: str, x: object) -> np.ndarray:
    """``x`` (a tensor or ndarray, named ``name`` in errors) as an ndarray on the host."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a tensor or ndarray, got {type(x).__name__}")
    return x


def _pair(pred: object, label: object) -> tuple[np.ndarray, np.ndarray]:
    p = as_numpy("pred", pred).astype(np.float64).ravel()
    y = as_numpy("label", label).astype(np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"pred, label: expected equal sizes, got {p.size} and {y.size}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ValueError("pred: expected probabilities in [0, 1] (no NaN)")
    return p, y


def reliability_bins(
    pred: object, label: object, n_bins: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: (count, mean prediction, mean label); empty bins hold NaN means."""
    p, y = _pair(pred, label)
    if n_bins < 1:
        raise ValueError(f"n_bins: expected >= 1, got {n_bins}")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)  # p == 1 goes to the last bin
    cnt = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = np.bincount(idx, weights=p, minlength=n_bins) / cnt
        my = np.bincount(idx, weights=y, minlength=n_bins) / cnt
    return cnt, mp, my


def ece(pred: object, label: object, n_bins: int = 20) -> float:
    """Expected calibration error: sum over bins of (n_b / N) |mean pred_b - mean label_b|."""
    cnt, mp, my = reliability_bins(pred, label, n_bins)
    n = cnt.sum()
    if n == 0:
        return float("nan")
    nz = cnt > 0
    return float(np.sum(cnt[nz] / n * np.abs(mp[nz] - my[nz])))


def roc_auc(pred: object, label: object) -> float:
    """Exact ROC-AUC (Mann-Whitney U with average ranks for ties); NaN with a single class."""
    p, y = _pair(pred, label)
    pos = y > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inv, cnt = np.unique(p, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(cnt) - (cnt - 1) / 2.0  # 1-based average rank of each distinct value
    r = avg_rank[inv]
    return float((r[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def brier(pred: object, label: object) -> float:
    """Mean squared error between predictions and 0/1 labels."""
    p, y = _pair(pred, label)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def survival_labels(
    accept_len: object, draft_len: int, proposed: object | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Prefix-survival labels and validity mask, both (N, G) bool.

    ``label[n, k-1] = accept_len[n] >= k``; ``mask[n, k-1] = proposed[n] >= k`` (all True without
    ``proposed``).
    """
    a = as_numpy("accept_len", accept_len).astype(np.int64).ravel()
    k = np.arange(1, draft_len + 1)
    label = a[:, None] >= k[None, :]
    if proposed is None:
        mask = np.ones_like(label)
    else:
        pr = as_numpy("proposed", proposed).astype(np.int64).ravel()
        if pr.shape != a.shape:
            raise ValueError(f"proposed: expected shape ({a.size},), got ({pr.size},)")
        if np.any(a > pr):
            raise ValueError("accept_len, proposed: expected accept_len <= proposed")
        mask = pr[:, None] >= k[None, :]
    if a.size and (a.min() < 0 or a.max() > draft_len):
        raise ValueError(f"accept_len: expected values in [0, {draft_len}]")
    return label, mask
