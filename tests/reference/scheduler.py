"""Plain references for the prefix scheduler (docs/algorithms.md section 4) and its step-time curve.

``prefix_schedule_ref`` is Algorithm 1 written literally: list every candidate, sort, walk.
``prefix_schedule_vec`` is a vectorised NumPy version (the fair baseline timed in bench/), tested
against the loop. Neither shares code with the C++ walk.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np


def step_time_ref(
    tokens: Sequence[float], seconds: Sequence[float], b: float, step: bool = False
) -> float:
    """T(b) of a profile: flat below the grid, last slope (>= 0) above it, linear or ceil inside."""
    if len(tokens) == 1 or b <= tokens[0]:
        return seconds[0]
    if b >= tokens[-1]:
        slope = (seconds[-1] - seconds[-2]) / (tokens[-1] - tokens[-2])
        return seconds[-1] + max(slope, 0.0) * (b - tokens[-1])
    hi = bisect.bisect_left(tokens, b)
    if step or tokens[hi] == b:
        return seconds[hi]
    lo = hi - 1
    w = (b - tokens[lo]) / (tokens[hi] - tokens[lo])
    return seconds[lo] + w * (seconds[hi] - seconds[lo])


def survival_ref(conf: Sequence[Sequence[float]]) -> list[list[float]]:
    """a[r][j] = prod_{i <= j} c[r][i], multiplied left to right in double precision."""
    out = []
    for row in conf:
        prod, a = 1.0, []
        for c in row:
            prod *= float(c)
            a.append(prod)
        out.append(a)
    return out


def prefix_schedule_ref(
    conf: Sequence[Sequence[float]],
    sps: Callable[[int], float],
    early_stop: bool = True,
    max_lengths: Sequence[int] | None = None,
    token_budget: int | None = None,
) -> list[int]:
    """Algorithm 1: sort all (r, j) with a > 0 by a descending (ties: r, then j), walk greedily."""
    num_req = len(conf)
    a = survival_ref(conf)
    cands = []
    for r in range(num_req):
        cap = len(a[r]) if max_lengths is None else min(len(a[r]), max_lengths[r])
        for j in range(cap):
            if a[r][j] <= 0.0:
                break
            cands.append((-a[r][j], r, j))
    cands.sort()
    lengths = [0] * num_req
    b, tau = num_req, float(num_req)
    best, best_lengths = tau * sps(b), list(lengths)
    for neg_a, r, j in cands:
        if token_budget is not None and b + 1 > token_budget:
            break
        lengths[r] = j + 1
        b += 1
        tau += -neg_a
        theta = tau * sps(b)
        if theta > best:
            best, best_lengths = theta, list(lengths)
        elif early_stop:
            break
    return best_lengths


def prefix_schedule_vec(
    conf: np.ndarray, sps_of: Callable[[np.ndarray], np.ndarray], early_stop: bool = True
) -> np.ndarray:
    """Vectorised Algorithm 1. conf [R, G] -> lengths [R] int32.

    Sorted survivals give the objective of every prefix of the order at once (tau accumulated
    from R in the walk's order, so the sums match the loop bit for bit). The early stop keeps the
    prefix before the first non-increase; without it, the first maximum.
    """
    num_req, g = conf.shape
    a = np.cumprod(conf.astype(np.float64), axis=1)
    rows = np.repeat(np.arange(num_req), g)
    flat = a.ravel()
    keep = flat > 0
    order = np.lexsort((np.tile(np.arange(g), num_req)[keep], rows[keep], -flat[keep]))
    tau = np.cumsum(np.concatenate([[float(num_req)], flat[keep][order]]))
    theta = tau * sps_of(num_req + np.arange(len(tau)))
    if early_stop:
        drops = np.nonzero(np.diff(theta) <= 0)[0]
        n_adm = int(drops[0]) if len(drops) else len(tau) - 1
    else:
        n_adm = int(np.argmax(theta))
    return np.bincount(rows[keep][order][:n_adm], minlength=num_req).astype(np.int32)
