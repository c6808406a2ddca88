"""Acceptance metrics over per-request verification rounds (``docs/algorithms.md`` section 5).

A *round record* is one request in one draft-verify round: ``proposed`` drafts verified,
``accepted`` of them accepted, ``emitted`` tokens appended (accepted + 1, cut at a stop token or
the token budget) and, for DSpark, the per-position confidences ``c_1..c_n`` (for drafters
without a confidence head, optionally the draft tokens' own probabilities ``q(d_k)``). Every
metric pools all records of a benchmark (like the reference: long generations weigh more).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dspark.calibration.metrics import roc_auc

__all__ = [
    "RoundRecord",
    "acceptance_summary",
    "auc_score_kind",
    "conditional_acceptance",
    "conditional_auc",
    "conditional_rates",
    "cumulative_survival",
    "records_from_rounds",
    "threshold_sweep",
]


@dataclass
class RoundRecord:
    """One request in one verification round.

    Attributes
    ----------
    proposed : int
        Drafts verified (n).
    accepted : int
        Drafts accepted (0..n).
    emitted : int
        Tokens appended this round (tau of the round: accepted + 1 unless cut at a stop token).
    confidence : list of float, optional
        Per-position conditional confidences ``c_1..c_n`` (DSpark), else None.
    draft_prob : list of float, optional
        The drafter's probability ``q(d_k)`` of each proposed draft token, when recorded.
    """

    proposed: int
    accepted: int
    emitted: int
    confidence: list[float] | None = field(default=None)
    draft_prob: list[float] | None = field(default=None)

    def __post_init__(self) -> None:
        if not 0 <= self.accepted <= self.proposed:
            raise ValueError(
                f"accepted: expected 0 <= accepted <= proposed = {self.proposed}, "
                f"got {self.accepted}"
            )
        if self.emitted < 0 or self.emitted > self.accepted + 1:
            raise ValueError(
                f"emitted: expected 0..accepted + 1 = {self.accepted + 1}, got {self.emitted}"
            )
        for name in ("confidence", "draft_prob"):
            v = getattr(self, name)
            if v is not None and len(v) != self.proposed:
                raise ValueError(
                    f"{name}: expected {self.proposed} values (one per proposed draft), got "
                    f"{len(v)}"
                )

    def to_json(self) -> list[Any]:
        row = [self.proposed, self.accepted, self.emitted, self.confidence]
        return row if self.draft_prob is None else [*row, self.draft_prob]

    @classmethod
    def from_json(cls, row: Any) -> RoundRecord:
        """Inverse of :meth:`to_json` (also reads the 4-field rows written before draft_prob)."""
        if not isinstance(row, list) or len(row) not in (4, 5):
            raise ValueError(
                f"round record: expected [proposed, accepted, emitted, conf(, draft_prob)], got "
                f"{row!r}"
            )
        conf = None if row[3] is None else [float(c) for c in row[3]]
        qprob = None if len(row) < 5 or row[4] is None else [float(q) for q in row[4]]
        return cls(int(row[0]), int(row[1]), int(row[2]), conf, qprob)


def records_from_rounds(rounds: Iterable[Any], num_requests: int) -> list[list[RoundRecord]]:
    """Split :class:`dspark.generation.RoundStats` into per-request record lists.

    Returns a list of length ``num_requests``; entry b holds request b's rounds in order.
    """
    out: list[list[RoundRecord]] = [[] for _ in range(num_requests)]
    for r in rounds:
        conf = getattr(r, "confidence", None)
        qprob = getattr(r, "draft_prob", None)
        for i, req in enumerate(r.requests):
            c = None if conf is None else [float(x) for x in conf[i]]
            q = None if qprob is None else [float(x) for x in qprob[i]]
            out[req].append(RoundRecord(r.proposed[i], r.accepted[i], r.emitted[i], c, q))
    return out


def _arrays(records: Sequence[RoundRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.array([r.proposed for r in records], dtype=np.int64)
    a = np.array([r.accepted for r in records], dtype=np.int64)
    e = np.array([r.emitted for r in records], dtype=np.int64)
    return n, a, e


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def conditional_acceptance(records: Sequence[RoundRecord], max_position: int) -> list[float]:
    """Position-wise conditional acceptance, computed directly (not from cumulative ratios).

    Entry k-1 is: among rounds that proposed at least k drafts and accepted drafts 1..k-1, the
    fraction that also accepted draft k (NaN when no round qualifies).
    """
    n, a, _ = _arrays(records)
    return conditional_rates(n, a, max_position)


def conditional_rates(
    limit: Sequence[int] | np.ndarray, accepted: Sequence[int] | np.ndarray, max_position: int
) -> list[float]:
    """The statistic of :func:`conditional_acceptance` from per-round arrays: entry k-1 is the
    fraction of rounds with ``limit >= k`` and ``accepted >= k - 1`` that have ``accepted >= k``
    (``limit`` is what could be accepted: proposed drafts, or a tree's depth)."""
    n, a = np.asarray(limit, dtype=np.int64), np.asarray(accepted, dtype=np.int64)
    out = []
    for k in range(1, max_position + 1):
        elig = (n >= k) & (a >= k - 1)
        out.append(_ratio(float((elig & (a >= k)).sum()), float(elig.sum())))
    return out


def conditional_auc(
    records: Sequence[RoundRecord], max_position: int, score: str = "confidence"
) -> list[float]:
    """Position-wise ROC AUC of a per-draft score predicting that draft's acceptance.

    Entry k-1 is computed over the rounds that proposed at least k drafts and accepted drafts
    1..k-1 (the rounds of :func:`conditional_acceptance`): the label is "draft k accepted", the
    score is the round's ``score`` value at position k. ``score="confidence"`` uses a confidence
    head's ``c_k`` (a conditional probability by construction), ``score="draft_prob"`` the
    draft token's own probability ``q(d_k)`` (for drafters without a head). The AUC is the
    Mann-Whitney statistic, ties counted one half (:func:`dspark.calibration.roc_auc`); NaN
    when a position has no round of one of the two classes, or when an eligible round carries
    no score.

    Raises
    ------
    ValueError
        An unknown ``score``.
    """
    if score not in ("confidence", "draft_prob"):
        raise ValueError(f"score: expected 'confidence' or 'draft_prob', got {score!r}")
    out = []
    for k in range(1, max_position + 1):
        elig = [r for r in records if r.proposed >= k and r.accepted >= k - 1]
        vals = [getattr(r, score) for r in elig]
        if not elig or any(v is None for v in vals):
            out.append(math.nan)
            continue
        pred = np.array([v[k - 1] for v in vals], dtype=np.float64)
        label = np.array([r.accepted >= k for r in elig])
        auc = roc_auc(pred, label)
        out.append(auc if math.isfinite(auc) else math.nan)  # one NaN object, as _ratio's
    return out


def auc_score_kind(records: Sequence[RoundRecord]) -> str | None:
    """Which score :func:`conditional_auc` can use on these records: ``"confidence"`` when every
    round with drafts has head confidences, else ``"draft_prob"`` when every one has draft
    probabilities, else None."""
    drafted = [r for r in records if r.proposed > 0]
    for kind in ("confidence", "draft_prob"):
        if drafted and all(getattr(r, kind) is not None for r in drafted):
            return kind
    return None


def cumulative_survival(records: Sequence[RoundRecord], max_position: int) -> list[float]:
    """Prefix survival: #rounds with accepted >= k over #rounds with proposed >= k (the
    reference's ``accept_rate@(k-1)``)."""
    n, a, _ = _arrays(records)
    return [
        _ratio(float((a >= k).sum()), float((n >= k).sum())) for k in range(1, max_position + 1)
    ]


def acceptance_summary(records: Sequence[RoundRecord], max_position: int) -> dict[str, Any]:
    """Pooled acceptance statistics of one benchmark.

    Returns
    -------
    dict
        ``rounds``; ``tau`` (mean tokens per round, bonus included); ``proposed`` (mean proposal
        length); ``accepted`` (mean accepted drafts); ``acceptance_rate`` (accepted / proposed);
        ``verify_rate`` (sum tau / (sum proposed + rounds)); ``conditional`` and ``survival``
        (lists over positions 1..max_position); ``auc`` (:func:`conditional_auc` per position,
        from ``auc_score``: ``"confidence"``, ``"draft_prob"`` or None when the records carry
        neither). JSON-ready (NaN where undefined).
    """
    n, a, e = _arrays(records)
    rounds = len(records)
    kind = auc_score_kind(records)
    return {
        "rounds": rounds,
        "tau": _ratio(float(e.sum()), rounds),
        "proposed": _ratio(float(n.sum()), rounds),
        "accepted": _ratio(float(a.sum()), rounds),
        "acceptance_rate": _ratio(float(a.sum()), float(n.sum())),
        "verify_rate": _ratio(float(e.sum()), float(n.sum() + rounds)),
        "conditional": conditional_acceptance(records, max_position),
        "survival": cumulative_survival(records, max_position),
        "auc": [math.nan] * max_position
        if kind is None
        else conditional_auc(records, max_position, score=kind),
        "auc_score": kind,
    }


def threshold_sweep(
    records: Sequence[RoundRecord],
    thresholds: Sequence[float],
    *,
    mode: str = "cumulative",
) -> list[dict[str, float]]:
    """Static confidence-threshold sweep, replayed on rounds recorded without a threshold.

    For threshold t each round verifies only the longest prefix L whose cumulative confidence
    ``prod_{i<=k} c_i`` stays >= t (``mode="cumulative"``, what dspark's generator does), or
    whose per-position ``c_k`` stays >= t (``mode="per_position"``, the reference code). Because
    the verdict on draft k depends only on (p_k, q_k, u_k), the same round with the proposal
    cut at L accepts ``min(accepted, L)`` drafts: the replay is exact per round (it does not
    re-generate the continuation, whose round boundaries would shift).

    Returns
    -------
    list of dict
        Per threshold: ``threshold``, ``proposed`` (mean verified drafts per step),
        ``accepted`` and ``rejected`` (mean drafts accepted / rejected per step),
        ``tokens_per_step`` (accepted + 1), ``acceptance_rate`` (accepted / proposed).

    Raises
    ------
    ValueError
        A record without confidences, an unknown mode or a threshold outside [0, 1].
    """
    if mode not in ("cumulative", "per_position"):
        raise ValueError(f"mode: expected 'cumulative' or 'per_position', got {mode!r}")
    for t in thresholds:
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"thresholds: expected values in [0, 1], got {t}")
    # Rounds with no drafts (the last token of a budget) carry no confidences: nothing to cut.
    if any(r.confidence is None and r.proposed > 0 for r in records):
        raise ValueError("records: the threshold sweep needs per-position confidences (DSpark)")
    out = []
    for t in thresholds:
        n_sum = a_sum = 0
        for r in records:
            c = np.asarray(r.confidence or [], dtype=np.float64)
            score = np.cumprod(c) if mode == "cumulative" else c
            length = int(np.cumprod(score >= t).sum())  # longest prefix above the threshold
            n_sum += length
            a_sum += min(r.accepted, length)
        m = len(records)
        out.append(
            {
                "threshold": float(t),
                "proposed": _ratio(n_sum, m),
                "accepted": _ratio(a_sum, m),
                "rejected": _ratio(n_sum - a_sum, m),
                "tokens_per_step": _ratio(a_sum + m, m),
                "acceptance_rate": _ratio(a_sum, n_sum),
            }
        )
    return out
