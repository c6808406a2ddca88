"""PrefixScheduler and its async variant: exactness vs the reference walk, optimality, the
spec's losslessness counterexample (docs/algorithms.md section 4), monotonicity and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

import dspark
from dspark.scheduler import AsyncPrefixScheduler
from tests.reference.scheduler import (
    prefix_schedule_ref,
    prefix_schedule_vec,
    step_time_ref,
    survival_ref,
)

# ---------------------------------------------------------------- helpers


def _table(tokens: list[float], seconds: list[float], mode: str = "linear"):
    """A table and the plain reference SPS function over the same grid."""
    tab = dspark.SpsTable.from_step_times(tokens, seconds, mode)

    def sps(b: float) -> float:
        return 1.0 / step_time_ref(tokens, seconds, b, step=mode == "step")

    return tab, sps


def _gpu_like(max_tokens: int = 4096) -> tuple[list[float], list[float]]:
    """Flat (memory-bound) up to ~256 tokens, then linear (compute-bound); sparse grid."""
    grid = [1, 8, 32, 64, 128, 256, 512, 1024, 2048, max_tokens]
    return [float(b) for b in grid], [0.012 + 2.5e-5 * max(0, b - 200) for b in grid]


def _steep() -> tuple[list[float], list[float]]:
    """Costly tokens with a jagged start: small batches stop mid-way too."""
    grid = [1, 2, 3, 4, 6, 9, 16, 64, 512, 4096]
    return [float(b) for b in grid], [1.0, 1.3, 1.5, 1.9, 2.4, 3.5, 6.0, 20.0, 140.0, 1100.0]


CURVES = {"gpu": _gpu_like, "steep": _steep}


def _confidences(gen: torch.Generator, r: int, g: int, kind: str) -> torch.Tensor:
    if kind == "uniform":
        return torch.rand(r, g, generator=gen)
    if kind == "high":  # typical drafter: most positions likely to survive
        return 0.6 + 0.4 * torch.rand(r, g, generator=gen)
    # Quantised to quarters: many exact ties, zeros and ones (exercises the tie order and a == 0).
    return torch.randint(0, 5, (r, g), generator=gen).float() / 4


# ---------------------------------------------------------------- exactness vs the reference


@pytest.mark.parametrize("kind", ["uniform", "high", "ties"])
@pytest.mark.parametrize("mode", ["linear", "step"])
@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("curve", ["gpu", "steep"])
@pytest.mark.parametrize(("r", "g"), [(1, 1), (3, 4), (64, 7), (257, 8)])
def test_prefix_scheduler_matches_reference(r, g, curve, early_stop, mode, kind):
    tab, sps = _table(*CURVES[curve](), mode=mode)
    sched = dspark.PrefixScheduler(tab, early_stop=early_stop)
    gen = torch.Generator().manual_seed(1000 * r + g)
    for _ in range(5):
        conf = _confidences(gen, r, g, kind)
        got = sched.schedule(conf)
        assert got.dtype == torch.int32
        assert got.shape == (r,)
        want = prefix_schedule_ref(conf.tolist(), sps, early_stop=early_stop)
        assert got.tolist() == want


@pytest.mark.parametrize("kind", ["uniform", "high", "ties"])
def test_prefix_scheduler_caps_match_reference(kind):
    tokens, secs = _gpu_like()
    tab, sps = _table(tokens, [s * (1 + 0.002 * t) for t, s in zip(tokens, secs, strict=True)])
    sched = dspark.PrefixScheduler(tab)
    gen = torch.Generator().manual_seed(7)
    for budget in (None, 5, 40, 300):
        conf = _confidences(gen, 37, 6, kind)
        caps = torch.randint(0, 8, (37,), generator=gen, dtype=torch.int32)
        got = sched.schedule(conf, max_lengths=caps, token_budget=budget)
        want = prefix_schedule_ref(
            conf.tolist(), sps, max_lengths=caps.tolist(), token_budget=budget
        )
        assert got.tolist() == want
        assert (got <= caps).all()
        if budget is not None:
            assert 37 + int(got.sum()) <= max(budget, 37)


@pytest.mark.parametrize("early_stop", [True, False])
def test_prefix_schedule_vec_matches_loop_reference(early_stop):
    """The vectorised baseline timed in bench/ is itself checked against the loop."""
    gen = torch.Generator().manual_seed(3)
    for curve in (_gpu_like, _steep):
        tab, sps = _table(*curve())
        for r, g in [(1, 4), (16, 8), (256, 8)]:
            for kind in ("high", "ties"):
                conf = _confidences(gen, r, g, kind)
                got = prefix_schedule_vec(
                    conf.numpy(), lambda b, t=tab: np.array(t(b)), early_stop=early_stop
                )
                assert got.tolist() == prefix_schedule_ref(conf.tolist(), sps, early_stop)


def test_prefix_scheduler_remaining_tokens_cap():
    sched = dspark.PrefixScheduler(dspark.SpsTable.from_step_times([1.0, 4096.0], [1.0, 1.0]))
    conf = torch.full((4, 5), 0.9)
    rem = torch.tensor([1, 2, 10, 4])
    assert sched.schedule(conf, remaining_tokens=rem).tolist() == [0, 1, 5, 3]
    assert sched.schedule(conf, remaining_tokens=rem, max_lengths=2).tolist() == [0, 1, 2, 2]
    with pytest.raises(ValueError, match=r"remaining_tokens\[0\] = 0"):
        sched.schedule(conf, remaining_tokens=torch.tensor([0, 1, 1, 1]))


def test_prefix_scheduler_accepts_numpy_strided_and_float64():
    tab, _ = _table(*_gpu_like())
    sched = dspark.PrefixScheduler(tab)
    conf = torch.rand(9, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = sched.schedule(conf[:, ::2].float().contiguous())
    assert torch.equal(sched.schedule(conf[:, ::2]), want)
    assert torch.equal(sched.schedule(conf[:, ::2].numpy()), want)
    row = conf[:1, ::2].float()
    assert torch.equal(sched.schedule(row.expand(9, 6)), sched.schedule(row.repeat(9, 1)))


# ---------------------------------------------------------------- optimality (brute force)


def _objective(conf: list[list[float]], lengths, sps) -> float:
    a = survival_ref(conf)
    tau = len(conf) + sum(sum(a[r][: lengths[r]]) for r in range(len(conf)))
    return tau * sps(len(conf) + sum(lengths))


@pytest.mark.parametrize(("r", "g"), [(1, 5), (2, 3), (3, 3), (4, 2)])
def test_prefix_scheduler_optimal_on_unimodal_objective(r, g):
    """With a linear step time T(B) = t0 + t1 B and concave cumulative survival, the objective
    tau(k) / T(R + k) over the survival order is quasi-concave, so the greedy walk with early stop
    finds the global optimum over all (G+1)^R length vectors."""
    gen = torch.Generator().manual_seed(r * 10 + g)
    rng = np.random.default_rng(r * 10 + g)
    checked = 0
    for _ in range(40):
        t1 = float(rng.uniform(0.02, 0.8))
        tokens = [1.0, 2.0, 64.0]
        tab, sps = _table(tokens, [1.0 + t1 * b for b in tokens])
        conf = (0.05 + 0.95 * torch.rand(r, g, generator=gen)).tolist()
        got = dspark.PrefixScheduler(tab).schedule(torch.tensor(conf)).tolist()
        best = max(_objective(conf, ls, sps) for ls in itertools.product(range(g + 1), repeat=r))
        assert _objective(conf, got, sps) == pytest.approx(best, rel=1e-12)
        checked += int(0 < sum(got) < r * g)
    assert checked >= 5  # the cases are not all trivial (nothing or everything admitted)


def test_early_stop_can_miss_a_later_peak_on_step_curves():
    """On a staircase the first drop stops the walk; the global search (used by the async
    variant on stale confidences) sees past it. This is why the async variant exists."""
    tab, _ = _table([1.0, 2.0, 9.0], [1.0, 2.0, 2.0], mode="step")  # 2..9 tokens cost the same
    conf = torch.full((1, 8), 0.95)
    assert dspark.PrefixScheduler(tab).schedule(conf).tolist() == [0]
    assert dspark.PrefixScheduler(tab, early_stop=False).schedule(conf).tolist() == [8]
    assert dspark.PrefixScheduler(tab).capacity(conf) == 8


# ---------------------------------------------------------------- asynchronous variant


def test_admit_top_k_and_capacity_match_reference():
    tab, sps = _table(*_gpu_like())
    sched = dspark.PrefixScheduler(tab)
    gen = torch.Generator().manual_seed(11)
    for kind in ("uniform", "ties"):
        conf = _confidences(gen, 50, 7, kind)
        a = survival_ref(conf.tolist())
        order = sorted((-a[r][j], r, j) for r in range(50) for j in range(7) if a[r][j] > 0)
        # capacity == number of drafts the global (no early stop) reference admits
        global_ref = prefix_schedule_ref(conf.tolist(), sps, early_stop=False)
        assert sched.capacity(conf) == sum(global_ref)
        for k in (0, 1, 17, 200, 10_000):
            got = sched.admit_top_k(conf, k)
            want = [0] * 50
            for _, r, j in order[:k]:
                want[r] = max(want[r], j + 1)
            assert got.tolist() == want
            assert int(got.sum()) == min(k, len(order))


@pytest.mark.parametrize("curve", ["gpu", "steep", "flat", "late_peak"])
@pytest.mark.parametrize(("r", "g"), [(3, 5), (200, 8), (700, 4)])
def test_capacity_matches_global_reference(curve, r, g):
    """capacity() walks descending chunks and stops on a bound; it must still find the best
    prefix of the whole order, including peaks far beyond the first chunk."""
    tokens = {
        "flat": ([1.0, 8192.0], [1.0, 1.0]),  # everything is admitted
        "late_peak": ([1.0, 2.0, 5000.0], [1.0, 3.0, 3.0]),  # a costly first step, then free
    }
    tok, sec = CURVES[curve]() if curve in CURVES else tokens[curve]
    tab, sps = _table(tok, sec, mode="step" if curve == "late_peak" else "linear")
    sched = dspark.PrefixScheduler(tab)
    gen = torch.Generator().manual_seed(r + g)
    for kind in ("uniform", "high", "ties"):
        conf = _confidences(gen, r, g, kind)
        want = sum(prefix_schedule_ref(conf.tolist(), sps, early_stop=False))
        assert sched.capacity(conf) == want
        budget = r + 37
        want_b = sum(prefix_schedule_ref(conf.tolist(), sps, early_stop=False, token_budget=budget))
        assert sched.capacity(conf, token_budget=budget) == want_b


def test_async_scheduler_uses_stale_capacity():
    tab, _ = _table(*_gpu_like())
    ref = dspark.PrefixScheduler(tab, early_stop=False)
    asched = AsyncPrefixScheduler(tab, delay=2)
    gen = torch.Generator().manual_seed(5)
    confs = [_confidences(gen, 40, 6, "high") for _ in range(6)]
    for t, c in enumerate(confs):
        got = asched.step(c)
        if t >= 2:
            k = ref.capacity(confs[t - 2])
            assert torch.equal(got, ref.admit_top_k(c, k))


def test_async_scheduler_draft_cost_and_skip():
    """With a drafter that costs more than speculation gains, K becomes 0 (draft skipping)."""
    tokens, secs = _gpu_like()
    tab = dspark.SpsTable.from_step_times(tokens, secs)
    conf = torch.full((256, 7), 0.5)
    cheap = AsyncPrefixScheduler(tab, delay=1, draft_seconds=1e-6)
    dear = AsyncPrefixScheduler(tab, delay=1, draft_seconds=0.1)
    assert cheap.next_capacity is None
    cheap.step(conf)
    dear.step(conf)
    assert cheap.next_capacity > 0
    assert dear.next_capacity == 0
    dear.skip()  # no drafting: the capacity is carried forward
    assert dear.next_capacity == 0
    with pytest.raises(ValueError, match="delay"):
        AsyncPrefixScheduler(tab, delay=0)
    with pytest.raises(TypeError, match="draft_seconds"):
        AsyncPrefixScheduler(dspark.LoadMonitor(tab), draft_seconds=0.1)


# ---------------------------------------------------------------- losslessness (the counterexample)


def _counterexample_first_tokens(policy: str, n: int, seed: int) -> np.ndarray:
    """docs/algorithms.md section 4: gamma = 2, V = {A, B}, p_t = (0.7, 0.3), p_d = (0.5, 0.5),
    c1 = 0.8, c2 = 0.9 after drafting A and 0 after B, SPS(1..3) = 1.0, 0.5, 0.45. n independent
    rounds are verified as n requests of one verify_batch call; returns the first output tokens."""
    gen = torch.Generator().manual_seed(seed)
    tab = dspark.SpsTable([1, 2, 3], [1.0, 0.5, 0.45])
    drafts = torch.randint(0, 2, (n, 2), generator=gen)  # p_d = (0.5, 0.5) at both positions
    conf = torch.stack([torch.full((n,), 0.8), torch.where(drafts[:, 0] == 0, 0.9, 0.0)], 1)
    if policy == "async":
        # K comes from an earlier, independent round's confidences (the causal barrier).
        stale = torch.stack(
            [torch.full((n,), 0.8), torch.where(torch.rand(n, generator=gen) < 0.5, 0.9, 0.0)], 1
        )
        planner = dspark.PrefixScheduler(tab, early_stop=False)
        lengths = [
            planner.admit_top_k(conf[i : i + 1], planner.capacity(stale[i : i + 1]))[0]
            for i in range(n)
        ]
    else:
        sched = dspark.PrefixScheduler(tab, early_stop=policy == "early_stop")
        lengths = [sched.schedule(conf[i : i + 1])[0] for i in range(n)]
    lengths = torch.stack(lengths).long()
    p_t, p_d = torch.tensor([0.7, 0.3]), torch.tensor([0.5, 0.5])
    keep = torch.arange(2)[None, :] < lengths[:, None]
    tokens = drafts[keep].int()
    indptr = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    res = dspark.verify_batch(
        p_t.expand(len(tokens) + n, 2).contiguous(),
        tokens,
        indptr,
        draft_probs=p_d.expand(len(tokens), 2).contiguous(),
        target_is_probs=True,
        temperature=1.0,
        seed=torch.arange(n, dtype=torch.int64) + 7919 * seed,
        offset=0,
        max_depth=2,  # a fixed output width, also when every length is 0
    )
    return res.tokens[:, 0].numpy()


ALPHA = 1e-3  # goodness-of-fit level; with n = 20000 a shift of 0.15 has power ~1 (z ~ 46)


@pytest.mark.parametrize("policy", ["early_stop", "async"])
def test_early_stop_keeps_first_token_lossless(policy):
    first = _counterexample_first_tokens(policy, 20_000, seed=1)
    counts = np.bincount(first, minlength=2)
    assert stats.chisquare(counts, 20_000 * np.array([0.7, 0.3])).pvalue > ALPHA
    # ... and the biased distribution is rejected, so the test has teeth.
    assert stats.chisquare(counts, 20_000 * np.array([0.85, 0.15])).pvalue < ALPHA


def test_global_search_biases_first_token():
    first = _counterexample_first_tokens("global", 20_000, seed=2)
    counts = np.bincount(first, minlength=2)
    assert stats.chisquare(counts, 20_000 * np.array([0.85, 0.15])).pvalue > ALPHA
    assert stats.chisquare(counts, 20_000 * np.array([0.7, 0.3])).pvalue < ALPHA


# ---------------------------------------------------------------- monotonicity in load


def test_heavier_load_never_lengthens_budgets():
    """T(B) = t0 + t1 B with larger t1 (each token costs more relative to the step: a more
    loaded, compute-bound engine) gives a larger marginal slow-down T(B+1)/T(B) at every B, so
    the early-stopping walk (same candidate order) admits a subset: lengths never grow."""
    gen = torch.Generator().manual_seed(13)
    slopes = [0.0005, 0.002, 0.01, 0.05, 0.3]
    tokens = [1.0, 2.0, 4096.0]
    scheds = [
        dspark.PrefixScheduler(_table(tokens, [1.0 + s * b for b in tokens])[0]) for s in slopes
    ]
    totals = np.zeros(len(slopes))
    for _ in range(30):
        conf = _confidences(gen, 48, 8, "high")
        lens = [s.schedule(conf) for s in scheds]
        for light, heavy in itertools.pairwise(lens):
            assert (heavy <= light).all()
        totals += [int(x.sum()) for x in lens]
    assert totals[0] > totals[-1]  # and the load actually changes the decision


def test_heavier_load_never_lengthens_budgets_random_curves():
    """Same property for arbitrary curves: T_heavy(B) = T_light(B) h(B) with h non-decreasing
    has T_heavy(B+1) / T_heavy(B) >= T_light(B+1) / T_light(B) at every B."""
    rng = np.random.default_rng(17)
    gen = torch.Generator().manual_seed(17)
    grid = np.arange(1, 600, dtype=np.float64)
    strict = 0
    for _ in range(10):
        light = np.cumsum(rng.exponential(0.4, len(grid)) * (rng.random(len(grid)) < 0.8)) + 50
        h = np.cumprod(1 + rng.exponential(0.004, len(grid)) * (rng.random(len(grid)) < 0.5))
        s_light = dspark.PrefixScheduler(dspark.SpsTable.from_step_times(grid, light))
        s_heavy = dspark.PrefixScheduler(dspark.SpsTable.from_step_times(grid, light * h))
        for _ in range(5):
            conf = _confidences(gen, 40, 7, "high")
            heavy, light_len = s_heavy.schedule(conf), s_light.schedule(conf)
            assert (heavy <= light_len).all()
            strict += int(heavy.sum() < light_len.sum())
    assert strict >= 10  # the extra load changes the decision in many cases


# ---------------------------------------------------------------- bad input


BAD_CONF = [
    (torch.tensor([[0.5, float("nan")]]), ValueError, r"confidences\[0, 1\] = nan"),
    (torch.tensor([[0.5], [1.5]]), ValueError, r"confidences\[1, 0\] = 1.5"),
    (torch.tensor([[-0.1]]), ValueError, r"confidences\[0, 0\] = -0.1"),
    (torch.zeros(0, 4), ValueError, "empty batch"),
    (torch.zeros(4), ValueError, r"expected shape \(R, G\)"),
    (torch.zeros(2, 3, dtype=torch.int32), TypeError, "floating"),
    ([[0.5]], TypeError, "confidences: expected a torch.Tensor"),
]


@pytest.mark.parametrize(("conf", "exc", "match"), BAD_CONF)
def test_prefix_scheduler_rejects_bad_confidences(conf, exc, match):
    sched = dspark.PrefixScheduler(dspark.SpsTable([1, 8], [10.0, 9.0]))
    with pytest.raises(exc, match=match):
        sched.schedule(conf)
    with pytest.raises(exc, match=match):
        sched.capacity(conf)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_lengths": torch.tensor([1, -1], dtype=torch.int32)}, r"max_lengths\[1\] = -1"),
        ({"max_lengths": torch.tensor([1, 2**32 + 1])}, r"max_lengths: expected values that fit"),
        ({"max_lengths": 2**40}, r"max_lengths: expected an int in"),
        (
            {"max_lengths": torch.tensor([1], dtype=torch.int32)},
            r"max_lengths: expected shape \(2,\)",
        ),
        ({"token_budget": 0}, "token_budget"),
    ],
)
def test_prefix_scheduler_rejects_bad_caps(kwargs, match):
    sched = dspark.PrefixScheduler(dspark.SpsTable([1, 8], [10.0, 9.0]))
    with pytest.raises(ValueError, match=match):
        sched.schedule(torch.full((2, 3), 0.5), **kwargs)
