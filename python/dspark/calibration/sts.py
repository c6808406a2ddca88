"""Sequential temperature scaling (STS) of per-position confidences (docs/algorithms.md section 3).

For k = 1..G in order, a scalar T_k is chosen by 1-D grid search to minimise the ECE of the
cumulative product ``prod_{i<=k} c_i`` against observed prefix survival, with T_1..T_{k-1} fixed;
``c_k <- sigmoid(logit(c_k) / T_k)``. The map is order-preserving per position.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from dspark.calibration.metrics import as_numpy, brier, ece, roc_auc, survival_labels

__all__ = [
    "StsResult",
    "apply_sts",
    "calibration_report",
    "confidence_logits",
    "default_grid",
    "sigmoid",
    "sts",
]

_EPS = 1e-7


class StsResult(NamedTuple):
    """Fitted temperatures and per-position ECE on the fitting set."""

    temperatures: torch.Tensor  # (G,) float64
    ece_before: torch.Tensor  # (G,) float64
    ece_after: torch.Tensor  # (G,) float64


def default_grid() -> np.ndarray:
    """401 log-spaced temperatures in [0.05, 20], including exactly 1."""
    g = np.unique(np.concatenate([np.geomspace(0.05, 20.0, 400), [1.0]]))
    return g


def confidence_logits(name: str, confidences: object, logits: bool) -> np.ndarray:
    """Checked (N, G) confidences as float64 logits (``logits``: they already are logits)."""
    x = as_numpy(name, confidences).astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected shape (N, G), got {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty (N, G) array, got {x.shape}")
    if logits:
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: expected finite logits")
        return x
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError(f"{name}: expected probabilities in [0, 1] (no NaN)")
    p = np.clip(x, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def apply_sts(
    confidences: torch.Tensor | np.ndarray,
    temperatures: torch.Tensor | np.ndarray,
    *,
    logits: bool = False,
) -> torch.Tensor:
    """Calibrated per-position confidences ``sigmoid(logit(c_k) / T_k)``, shape (N, G) float32.

    Parameters
    ----------
    confidences : Tensor (N, G)
        Raw confidences in [0, 1], or logits with ``logits=True``.
    temperatures : Tensor (G,)
        Positive temperatures from :func:`sts`.
    """
    z = confidence_logits("confidences", confidences, logits)
    t = as_numpy("temperatures", temperatures).astype(np.float64).ravel()
    if t.shape != (z.shape[1],) or not np.all(t > 0):
        raise ValueError(f"temperatures: expected {z.shape[1]} positive values, got {t.tolist()}")
    return torch.from_numpy(sigmoid(z / t[None, :]).astype(np.float32))


def _ece_grid(
    prev: np.ndarray, z: np.ndarray, y: np.ndarray, grid: np.ndarray, n_bins: int
) -> np.ndarray:
    """ECE of prev * sigmoid(z / T) against y for every T in grid (vectorised in chunks)."""
    out = np.empty(len(grid))
    n = len(z)
    for s in range(0, len(grid), 16):
        t = grid[s : s + 16]
        pred = prev[None, :] * sigmoid(z[None, :] / t[:, None])  # [chunk, n]
        idx = np.minimum((pred * n_bins).astype(np.int64), n_bins - 1)
        flat = idx + n_bins * np.arange(len(t))[:, None]
        size = len(t) * n_bins
        sp = np.bincount(flat.ravel(), weights=pred.ravel(), minlength=size)
        sy = np.bincount(
            flat.ravel(), weights=np.broadcast_to(y, pred.shape).ravel(), minlength=size
        )
        # sum_b |sum pred_b - sum y_b| / n equals sum_b (n_b / n) |mean pred_b - mean y_b|.
        out[s : s + len(t)] = np.abs(sp - sy).reshape(len(t), n_bins).sum(1) / max(n, 1)
    return out


def sts(
    confidences: torch.Tensor | np.ndarray,
    accept_len: torch.Tensor | np.ndarray,
    *,
    proposed: torch.Tensor | np.ndarray | None = None,
    grid: np.ndarray | None = None,
    n_bins: int = 20,
    logits: bool = False,
) -> StsResult:
    """Fit sequential temperature scaling on a held-out set.

    Parameters
    ----------
    confidences : Tensor (N, G)
        Per-position conditional confidences of N verification rounds (probabilities, or logits
        with ``logits=True``).
    accept_len : Tensor (N,) int
        Accepted drafts per round (0..G), excluding the bonus token.
    proposed : Tensor (N,) int, optional
        Drafts actually verified per round; positions beyond it are left out. Default: all G.
    grid : ndarray, optional
        Candidate temperatures (positive). Default :func:`default_grid`. Among equally good
        temperatures the one closest to 1 (in log scale) wins.
    n_bins : int
        Equal-width ECE bins (20, as in the reference diagnostics).

    Returns
    -------
    StsResult
        ``temperatures`` (G,) and the ECE of the cumulative products before and after.

    Examples
    --------
    >>> import torch
    >>> from dspark.calibration import sts, apply_sts
    >>> g = torch.Generator().manual_seed(0)
    >>> true = torch.rand(4000, 3, generator=g) * 0.6 + 0.3
    >>> acc = (torch.rand(4000, 3, generator=g) < true).int().cumprod(1).sum(1)
    >>> over = torch.sigmoid(torch.logit(true) * 3)          # over-confident head
    >>> res = sts(over, acc)
    >>> bool((res.ece_after < res.ece_before).all())
    True
    """
    z = confidence_logits("confidences", confidences, logits)
    n, g = z.shape
    label, mask = survival_labels(accept_len, g, proposed)
    if label.shape[0] != n:
        raise ValueError(f"accept_len: expected shape ({n},), got ({label.shape[0]},)")
    grid = default_grid() if grid is None else np.asarray(grid, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(grid > 0) or not np.all(np.isfinite(grid)):
        raise ValueError("grid: expected a non-empty array of positive finite temperatures")
    temps = np.ones(g)
    before, after = np.full(g, np.nan), np.full(g, np.nan)
    raw_prev = np.ones(n)
    cal_prev = np.ones(n)
    closeness = np.abs(np.log(grid))
    for k in range(g):
        m = mask[:, k]
        y = label[m, k].astype(np.float64)
        if m.sum() == 0:
            continue
        raw_pred = raw_prev[m] * sigmoid(z[m, k])
        before[k] = ece(raw_pred, y, n_bins)
        e = _ece_grid(cal_prev[m], z[m, k], y, grid, n_bins)
        best = np.flatnonzero(e <= e.min() + 1e-12)
        temps[k] = grid[best[np.argmin(closeness[best])]]
        after[k] = ece(cal_prev[m] * sigmoid(z[m, k] / temps[k]), y, n_bins)
        raw_prev = raw_prev * sigmoid(z[:, k])
        cal_prev = cal_prev * sigmoid(z[:, k] / temps[k])
    return StsResult(torch.from_numpy(temps), torch.from_numpy(before), torch.from_numpy(after))


def calibration_report(
    confidences: torch.Tensor | np.ndarray,
    accept_len: torch.Tensor | np.ndarray,
    *,
    temperatures: torch.Tensor | np.ndarray | None = None,
    proposed: torch.Tensor | np.ndarray | None = None,
    n_bins: int = 20,
    logits: bool = False,
) -> dict[str, Any]:
    """Per-position ECE, ROC-AUC and Brier of the cumulative products, before and after STS.

    Returns
    -------
    dict
        ``{"position": [1..G], "count": [...], "before": {"ece", "auc", "brier"}, "after": {...}}``
        (``after`` only with ``temperatures``); lists of floats, JSON-ready.
    """
    z = confidence_logits("confidences", confidences, logits)
    g = z.shape[1]
    label, mask = survival_labels(accept_len, g, proposed)
    variants = {"before": np.ones(g)}
    if temperatures is not None:
        t = as_numpy("temperatures", temperatures).astype(np.float64).ravel()
        if t.shape != (g,) or not np.all(t > 0):
            raise ValueError(f"temperatures: expected {g} positive values")
        variants["after"] = t
    out: dict[str, Any] = {"position": list(range(1, g + 1)), "count": mask.sum(0).tolist()}
    for name, t in variants.items():
        pred = np.cumprod(sigmoid(z / t[None, :]), axis=1)
        rows: dict[str, list[float]] = {"ece": [], "auc": [], "brier": []}
        for k in range(g):
            m = mask[:, k]
            rows["ece"].append(ece(pred[m, k], label[m, k], n_bins))
            rows["auc"].append(roc_auc(pred[m, k], label[m, k]))
            rows["brier"].append(brier(pred[m, k], label[m, k]))
        out[name] = rows
    return out
