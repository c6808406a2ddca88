"""Plain references for verify_batch (docs/algorithms.md section 1, docs/verify_batch.md section 4).

``process_row`` turns a raw target row into the processed distribution p; ``verify_request_ref``
walks one request's tree with the rejection rule, drawing its randomness from an ``rng`` object.
With :class:`PhiloxRNG` it consumes the same random numbers as the kernels (so outputs must match
token for token); with :func:`enumerate_outputs` every coin outcome is enumerated exactly.
Everything is float64 NumPy and loop-by-loop: obvious, not fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tests.reference.philox import philox_words

RACE_BLOCK = 1024  # tokens per race block (part of the sampling algorithm)


def process_row(
    x: np.ndarray,
    *,
    is_probs: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> np.ndarray:
    """Processed distribution p of a raw row: temperature, then top-k, top-p, min-p (tie-inclusive).

    Temperature 0 (greedy) gives the one-hot of the lowest-index argmax.
    """
    x = np.asarray(x, dtype=np.float64)
    if temperature == 0:
        p = np.zeros_like(x)
        p[int(np.argmax(x))] = 1.0
        return p
    if is_probs:
        w = np.where(x > 0, np.power(np.maximum(x, 1e-300), 1.0 / temperature), 0.0)
    else:
        w = np.exp((x - x.max()) / temperature)
    keep = np.ones_like(w, dtype=bool)
    if 0 < top_k < len(w):
        kth = np.sort(w)[::-1][top_k - 1]
        keep &= w >= kth
    if top_p < 1.0:
        kept = np.where(keep, w, 0.0)
        order = np.sort(kept)[::-1]
        cum = np.cumsum(order)
        i = int(np.searchsorted(cum, top_p * kept.sum()))  # first index with cum >= target
        keep &= w >= order[min(i, len(order) - 1)]
    if min_p > 0:
        keep &= w >= min_p * w.max()
    w = np.where(keep, w, 0.0)
    return w / w.sum()


class PhiloxRNG:
    """The kernels' random numbers: Philox4x32-10 keyed by (seed, offset, node, purpose, index)."""

    def __init__(self, seed: int, offset: int):
        self.seed, self.offset = int(seed) & (2**64 - 1), int(offset) & (2**64 - 1)

    def _words(self, index: np.ndarray, node: int, purpose: int) -> np.ndarray:
        s, o = self.seed, self.offset
        return philox_words(
            index, ((node + 1) << 2) | purpose, o & 0xFFFFFFFF, o >> 32, s & 0xFFFFFFFF, s >> 32
        )

    def accept(self, node: int, p_t: float, q_t: float) -> bool:
        u = float(self._words(np.array([0]), node, 0)[0, 0] >> np.uint64(8)) / 2**24
        return u * q_t < p_t

    def _exponential(self, words: np.ndarray) -> np.ndarray:
        u = ((words >> np.uint64(8)).astype(np.float64) + 0.5) / 2**24
        return -np.log(u)

    def sample(self, node: int, weights: np.ndarray) -> int:
        """Exponential race: block by mass, then token within the block (lowest index on ties)."""
        v = len(weights)
        nblocks = (v + RACE_BLOCK - 1) // RACE_BLOCK
        masses = np.array(
            [weights[b * RACE_BLOCK : (b + 1) * RACE_BLOCK].sum() for b in range(nblocks)]
        )
        e_block = self._exponential(self._words(np.arange(nblocks), node, 1)[:, 0])
        keys = np.where(masses > 0, masses / e_block, -1.0)
        b = int(np.argmax(keys))
        lo, hi = b * RACE_BLOCK, min(v, (b + 1) * RACE_BLOCK)
        idx = np.arange(lo, hi)
        e_tok = self._exponential(self._words(idx >> 2, node, 2))[np.arange(hi - lo), idx & 3]
        w = weights[lo:hi]
        keys = np.where(w > 0, w / e_tok, -1.0)
        return lo + int(np.argmax(keys))


@dataclass
class RequestOutput:
    tokens: list[int] = field(default_factory=list)  # emitted: accepted path then final token
    path: list[int] = field(default_factory=list)
    final_is_bonus: bool = True
    last_row: int = -1  # local row (0 = anchor, 1 + i = after node i)


def verify_request_ref(
    rows: Sequence[np.ndarray],
    tokens: Sequence[int],
    parents: Sequence[int] | None,
    rng,
    *,
    q_rows: Sequence[np.ndarray] | None = None,
    without_replacement: bool = False,
    greedy: bool = False,
    max_depth: int | None = None,
    max_emit: int | None = None,
    mutation: str | None = None,
) -> RequestOutput:
    """Verify one request. ``rows[0]`` is the anchor's processed p, ``rows[1 + i]`` node i's.

    ``q_rows[i]`` is the distribution node i was drawn from (None: deterministic drafts).
    ``mutation`` deliberately breaks one rule (tests prove the statistical tests catch it):
    "residual_is_p", "bonus_from_parent", "no_q_renormalisation".
    """
    n = len(tokens)
    par = list(range(-1, n - 1)) if parents is None else list(parents)
    depth_cap = n if max_depth is None else max_depth
    if max_emit is not None:
        if max_emit == 0:
            return RequestOutput(final_is_bonus=False)
        depth_cap = min(depth_cap, max_emit - 1)
    out = RequestOutput()
    cur, depth = -1, 0
    while True:
        p = np.asarray(rows[cur + 1], dtype=np.float64)
        children = [c for c in range(n) if par[c] == cur] if depth < depth_cap else []
        if greedy:
            a = int(np.argmax(p))
            hit = [c for c in children if tokens[c] == a]
            if hit:
                out.tokens.append(a)
                out.path.append(hit[0])
                cur, depth = hit[0], depth + 1
                continue
            out.tokens.append(a)
            out.final_is_bonus = not children
            out.last_row = cur + 1
            return out
        P, tried, accepted = p.copy(), [], None
        for c in children:
            t = int(tokens[c])
            if q_rows is None:
                Q = np.zeros_like(P)
                Q[t] = 1.0
            else:
                Q = np.asarray(q_rows[c], dtype=np.float64).copy()
                if without_replacement and mutation != "no_q_renormalisation":
                    Q[tried] = 0.0
                    Q = Q / Q.sum() if Q.sum() > 0 else Q
            if rng.accept(c, P[t], Q[t]):
                accepted = c
                break
            R = P.copy() if mutation == "residual_is_p" else np.maximum(P - Q, 0.0)
            P = R / R.sum() if R.sum() > 0 else p.copy()  # zero residual mass: back to p
            tried.append(t)
        if accepted is not None:
            out.tokens.append(int(tokens[accepted]))
            out.path.append(accepted)
            cur, depth = accepted, depth + 1
            continue
        if mutation == "bonus_from_parent" and not tried and cur >= 0:
            P = np.asarray(rows[par[cur] + 1], dtype=np.float64)
        out.tokens.append(rng.sample(cur, P))
        out.final_is_bonus = not tried
        out.last_row = cur + 1
        return out


# ---------------------------------------------------------------------------------------------
# Exact enumeration: a mock RNG that follows a script of choices and records the alternatives.


class _ScriptRNG:
    def __init__(self, script: list[int]):
        self.script, self.pos, self.prob, self.arity = script, 0, 1.0, []

    def _choose(self, probs: list[float]) -> int:
        if self.pos < len(self.script):
            i = self.script[self.pos]
        else:
            i = next(j for j, q in enumerate(probs) if q > 0)
            self.script.append(i)
        self.arity.append(len(probs))
        self.prob *= probs[i]
        self.pos += 1
        return i

    def accept(self, node: int, p_t: float, q_t: float) -> bool:
        a = min(1.0, p_t / q_t) if q_t > 0 else (1.0 if p_t > 0 else 0.0)
        return self._choose([a, 1.0 - a]) == 0

    def sample(self, node: int, weights: np.ndarray) -> int:
        w = np.asarray(weights, dtype=np.float64)
        return self._choose(list(w / w.sum()))


def enumerate_outputs(run: Callable[[object], RequestOutput]) -> dict[tuple[int, ...], float]:
    """Exact distribution of emitted token sequences: every coin outcome of ``run(rng)``."""
    dist: dict[tuple[int, ...], float] = {}
    script: list[int] = []
    while True:
        rng = _ScriptRNG(list(script))
        out = run(rng)
        if rng.prob > 0:
            key = tuple(out.tokens)
            dist[key] = dist.get(key, 0.0) + rng.prob
        script = rng.script
        # Odometer over choice sequences: advance the deepest choice with a nonzero alternative.
        while script:
            i = len(script) - 1
            script[i] += 1
            if script[i] < rng.arity[i]:
                break
            script.pop()
        if not script:
            return dist
