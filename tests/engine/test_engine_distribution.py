"""Under continuous batching (requests joining as others finish, chunked steps, preemption),
temperature-1 output keeps the target's law.

Same setup and statistics as tests/generation/test_distribution.py (V = 16 target, one prompt,
N = 4000 requests with their own seeds, the joint law of generated tokens 2 and 3, chi-square at
alpha = 1e-3 with asserted power > 0.9 against a TV error of 0.05), run through
:class:`dspark.engine.Engine` (fixed K, no speculation, and the load-aware scheduler) with at most 400 running requests and a page pool small enough to
preempt.
"""

from __future__ import annotations

import numpy as np
import pytest

from dspark.engine.engine import Engine
from dspark.models import build_drafter
from tests.engine.test_engine import Params
from tests.generation.test_distribution import (
    ALPHA,
    PROMPT,
    N,
    V,
    _exact_joint,
    _power,
    _pvalue,
    small_target,  # noqa: F401 (fixture)
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("speculation", "temperature"), [("fixed", 1.0), ("none", 0.8), ("scheduler", 1.0)]
)
def test_engine_output_distribution_equals_target(small_target, speculation, temperature):  # noqa: F811
    drafter = build_drafter("dspark", small_target, block_size=3, num_layers=1, markov_rank=8)
    eng = Engine(
        small_target,
        drafter if speculation != "none" else None,
        speculation=speculation,
        num_pages=300,
        page_size=4,
        max_num_seqs=400,
        max_num_batched_tokens=1024,
        max_model_len=16,
    )
    params = [Params(5, temperature=temperature, seed=i) for i in range(N)]
    outs = eng.generate([PROMPT] * N, params)
    gen = np.array(outs)
    assert gen.shape == (N, 5)
    counts = np.zeros((V, V))
    np.add.at(counts, (gen[:, 1], gen[:, 2]), 1)
    probs = _exact_joint(small_target, temperature, 0)
    assert _power(probs) > 0.9, "test too weak for this target"
    if speculation != "none":  # the scheduler: its own profile, horizon and confidences
        assert sum(sum(r.drafted) for r in eng.requests.values()) > 0
    assert eng.num_free_pages == 300
    assert _pvalue(counts, probs) > ALPHA
