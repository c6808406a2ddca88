"""Plain reference for the conditional confidence AUC of ``dspark.eval.conditional_auc``.

The AUC by its pairwise definition (every positive against every negative, ties one half) and
the eligible rounds selected one by one; shares no code with ``dspark.calibration.roc_auc``
(Mann-Whitney ranks) nor with the vectorised selection in ``dspark.eval.acceptance``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def auc_pairwise_ref(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(tie); NaN with one class."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return math.nan
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def conditional_auc_ref(rounds: Sequence[tuple[int, int, Sequence[float]]], k: int) -> float:
    """AUC at 1-based position ``k`` over rounds ``(proposed, accepted, scores)``: among rounds
    that proposed >= k drafts and accepted the first k - 1, does ``scores[k-1]`` rank the
    rounds that accepted draft k above those that rejected it."""
    scores, labels = [], []
    for proposed, accepted, s in rounds:
        if proposed < k or accepted < k - 1:
            continue
        scores.append(s[k - 1])
        labels.append(accepted >= k)
    return auc_pairwise_ref(scores, labels)
