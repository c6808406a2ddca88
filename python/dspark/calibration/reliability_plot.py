"""Reliability diagrams for prefix-survival confidences (matplotlib, imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from dspark.calibration.metrics import ece, reliability_bins, survival_labels
from dspark.calibration.sts import confidence_logits, sigmoid

__all__ = ["plot_reliability"]


def plot_reliability(
    confidences: torch.Tensor | np.ndarray,
    accept_len: torch.Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    temperatures: torch.Tensor | np.ndarray | None = None,
    positions: Sequence[int] | None = None,
    proposed: torch.Tensor | np.ndarray | None = None,
    n_bins: int = 20,
    logits: bool = False,
) -> None:
    """Save reliability diagrams (mean label vs mean prediction per bin) for chosen positions.

    Parameters
    ----------
    confidences : Tensor (N, G)
        Raw per-position confidences (or logits with ``logits=True``).
    accept_len : Tensor (N,)
        Accepted drafts per round.
    path : str or PathLike
        Output image (format from the suffix, e.g. ``.png``).
    temperatures : Tensor (G,), optional
        STS temperatures; when given, the calibrated curve is drawn next to the raw one.
    positions : sequence of int, optional
        1-based positions to draw (default: up to four spread over 1..G).
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend state
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plot_reliability needs matplotlib: pip install 'dspark[plot]'") from e
    z = confidence_logits("confidences", confidences, logits)
    g = z.shape[1]
    label, mask = survival_labels(accept_len, g, proposed)
    if positions is None:
        positions = sorted({round(x) for x in np.linspace(1, g, min(g, 4))})
    for p in positions:
        if not 1 <= p <= g:
            raise ValueError(f"positions: expected 1-based positions in [1, {g}], got {p}")
    curves = {"raw": np.cumprod(sigmoid(z), axis=1)}
    if temperatures is not None:
        t = np.asarray(temperatures, dtype=np.float64).ravel()
        curves["STS"] = np.cumprod(sigmoid(z / t[None, :]), axis=1)
    fig = Figure(figsize=(3.2 * len(positions), 3.2))
    axes = fig.subplots(1, len(positions), squeeze=False)[0]
    for ax, p in zip(axes, positions, strict=True):
        k, m = p - 1, mask[:, p - 1]
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for name, pred in curves.items():
            cnt, mp, my = reliability_bins(pred[m, k], label[m, k], n_bins)
            nz = cnt > 0
            err = ece(pred[m, k], label[m, k], n_bins)
            ax.plot(mp[nz], my[nz], marker="o", ms=3, label=f"{name} (ECE {100 * err:.1f}%)")
        ax.set_title(f"position {p}")
        ax.set_xlabel("predicted survival")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("observed survival")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
