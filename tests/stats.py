"""Statistics helpers for distribution tests: chi-square goodness of fit with a stated alpha and
the power to detect a given total-variation shift."""

from __future__ import annotations

import numpy as np
from scipy import stats


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Chi-square goodness-of-fit p-value; bins with expected count < min_expected are pooled."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    n = counts.sum()
    expected = probs * n
    small = expected < min_expected
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
        if expected[-1] == 0:
            assert counts[-1] == 0, "observed outcomes that have probability 0"
            counts, expected = counts[:-1], expected[:-1]
    stat = float(((counts - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(stat, len(counts) - 1))


def chi2_power(probs: np.ndarray, n: int, tv: float = 0.01, alpha: float = 1e-3) -> float:
    """Power of the chi-square test to detect a TV shift `tv` moved between the two most likely
    bins (the hardest place to see it), with n samples at level alpha."""
    p = np.sort(np.asarray(probs, dtype=np.float64).ravel())[::-1]
    dof = int((p * n >= 5).sum()) - 1
    lam = n * (tv**2 / p[0] + tv**2 / p[1])
    crit = stats.chi2.ppf(1 - alpha, dof)
    return float(stats.ncx2.sf(crit, dof, lam))
