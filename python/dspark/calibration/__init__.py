"""Calibration of drafter confidences: sequential temperature scaling and its diagnostics.

See ``docs/algorithms.md`` section 3. ``sts`` fits per-position temperatures on held-out rounds,
``apply_sts`` applies them, ``calibration_report`` gives ECE (20 bins), ROC-AUC and Brier per
position before/after, and ``plot_reliability`` saves reliability diagrams (needs matplotlib).
"""

from __future__ import annotations

from dspark.calibration.metrics import brier, ece, reliability_bins, roc_auc, survival_labels
from dspark.calibration.reliability_plot import plot_reliability
from dspark.calibration.sts import StsResult, apply_sts, calibration_report, default_grid, sts

__all__ = [
    "StsResult",
    "apply_sts",
    "brier",
    "calibration_report",
    "default_grid",
    "ece",
    "plot_reliability",
    "reliability_bins",
    "roc_auc",
    "sts",
    "survival_labels",
]
