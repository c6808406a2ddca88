"""Plain reference for dspark.draft_step (float64 NumPy, one request and one step at a time),
drawing the same Philox numbers as the kernel (node = -2 - k)."""

from __future__ import annotations

import numpy as np

from tests.reference.verify import PhiloxRNG


def draft_step_ref(
    U,
    w1,
    w2,
    anchors,
    temperature,
    seed,
    offset,
    *,
    hidden=None,
    conf_weight=None,
    conf_bias=0.0,
    candidates=0,
):
    """Returns (tokens [R, G], draft_logits [R, G, V], confidence [R, G] or None)."""
    U, w1, w2 = (np.asarray(a, dtype=np.float64) for a in (U, w1, w2))
    R, G, V = U.shape
    tokens = np.zeros((R, G), dtype=np.int64)
    logits = np.full((R, G, V), -np.inf)
    conf = np.zeros((R, G)) if hidden is not None else None
    for r in range(R):
        prev, t = int(anchors[r]), float(temperature[r])
        rng = PhiloxRNG(int(seed[r]), int(offset[r]))
        for k in range(G):
            if hidden is not None:
                feats = np.concatenate([np.asarray(hidden[r, k], dtype=np.float64), w1[prev]])
                conf[r, k] = 1 / (
                    1 + np.exp(-(feats @ np.asarray(conf_weight, dtype=np.float64) + conf_bias))
                )
            cand = np.arange(V)
            if candidates:
                order = sorted(range(V), key=lambda v: (-U[r, k, v], v))
                cand = np.array(order[:candidates])
            row = np.full(V, -np.inf)
            row[cand] = (U[r, k, cand] + w2[cand] @ w1[prev]) / (t if t > 0 else 1.0)
            logits[r, k] = row
            prev = rng.sample(-2 - k, np.exp(row - row.max())) if t > 0 else int(np.argmax(row))
            tokens[r, k] = prev
    return tokens, logits, conf
