"""DraftHorizon: the drafting horizon that maximises expected tokens per second."""

from __future__ import annotations

import itertools

import pytest

from dspark.engine.horizon import DraftHorizon


def _brute(alpha, draft, step, r):
    """Reference: the rate of every horizon, written out directly."""
    rates = [r / step(r)]
    for h in range(1, len(alpha) + 1):
        surv = [1.0]
        for a in alpha[:h]:
            surv.append(surv[-1] * a)
        rates.append(r * sum(surv) / (draft(h) + step(r * (1 + h))))
    return max(range(len(rates)), key=rates.__getitem__)


@pytest.mark.parametrize(
    ("alpha", "a", "b", "slope", "r"),
    list(
        itertools.product(
            ([0.9] * 5, [0.2] * 5, [0.8, 0.7, 0.3, 0.1, 0.1], [0.05] * 5),
            (0.0, 0.002),
            (0.0005, 0.003),
            (0.0001, 0.002),
            (1, 8),
        )
    ),
)
def test_choice_is_the_best_rate(alpha, a, b, slope, r):
    h = DraftHorizon(5, probe_every=0)
    h.alpha = list(alpha)
    for k in (1, 3, 5, 2):  # exact linear draft cost a + b k: the fit recovers it
        h.observe_draft(k, a + b * k)
    for k in range(1, 6):
        assert h.draft_cost(k) == pytest.approx(a + b * k, rel=1e-3, abs=1e-9)

    def step(tokens):
        return 0.004 + slope * tokens

    assert h.choose(r, step) == _brute(alpha, lambda k: a + b * k, step, r)


def test_useless_drafts_switch_drafting_off_and_probes_keep_checking():
    h = DraftHorizon(4, probe_every=8)
    for _ in range(60):  # nothing is ever accepted
        h.observe_draft(1, 0.002)
        h.observe_verify([1, 1, 1], [0, 0, 0])
    choices = [h.choose(3, lambda t: 0.01 + 0.001 * t) for _ in range(8 + 16 + 32 + 64 + 64)]
    probes = [i + 1 for i, c in enumerate(choices) if c]
    assert probes == [8, 24, 56, 120, 184]  # every 8th step, then backing off up to 64
    assert set(choices) == {0, 1} and h.alpha[0] < 0.01


def test_acceptance_is_conditional_per_position():
    h = DraftHorizon(3, rate=1.0, prior=0.5)
    # request 0 accepted 1 of 3 (pos1 yes, pos2 no, pos3 untested); request 1 accepted 3 of 3
    h.observe_verify([3, 3], [1, 3])
    assert h.alpha == [1.0, 0.5, 1.0]
    h.observe_verify([2], [0])  # position 1 rejected; position 2 untested
    assert h.alpha == [0.0, 0.5, 1.0]
