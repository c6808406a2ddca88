"""The engine's load-aware mode: its own step-cost profile, online refinement, TPOT targets,
mode switches, and log-probabilities of what it emits."""

from __future__ import annotations

import pytest
import torch

from dspark import LoadMonitor, PrefixScheduler, SamplingParams, SpsTable
from dspark.engine.engine import Engine
from dspark.models import build_drafter
from dspark.scheduler import AsyncPrefixScheduler
from tests._tiny import greedy_reference, tiny_qwen3


@pytest.fixture(scope="module")
def pair():
    target = tiny_qwen3(logit_scale=20.0)
    return target, build_drafter("dspark", target, num_layers=1, block_size=3).eval()


def _engine(pair, **kw):
    target, drafter = pair
    return Engine(target, drafter, page_size=8, max_num_seqs=4, max_model_len=64, **kw)


def _greedy(n):
    return SamplingParams(temperature=0.0, seed=0, max_tokens=n)


def test_profile_step_cost_is_measured_and_leaves_the_pool_empty(pair):
    eng = _engine(pair, speculation="fixed")
    table = eng.profile_step_cost(context_len=20, repeats=2)
    assert table.tokens[0] == 1 and table.tokens[-1] == eng.max_num_seqs * (eng.max_k + 1)
    assert all(t > 0 for t in table.step_times)
    assert eng.num_free_pages == eng.runner.cache.num_pages and not eng.runner.cache.requests


def test_auto_scheduler_profiles_then_learns_from_steps(pair):
    eng = _engine(pair, speculation="scheduler")
    assert isinstance(eng.scheduler, PrefixScheduler) and isinstance(eng.monitor, LoadMonitor)
    prompts = [[1, 2, 3], [9, 8, 7, 6], [5] * 7]
    outs = eng.generate(prompts, _greedy(12))
    target = pair[0]
    for p, o in zip(prompts, outs, strict=True):
        assert o == greedy_reference(target, torch.tensor([p]), 12)[0, len(p) :].tolist()
    assert eng.monitor.num_observations > 0
    assert eng.num_free_pages == eng.runner.cache.num_pages


class _CountingAsync(AsyncPrefixScheduler):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.steps = self.skips = 0

    def step(self, *a, **kw):
        self.steps += 1
        return super().step(*a, **kw)

    def skip(self):
        self.skips += 1
        super().skip()


def test_async_prefix_scheduler_drives_the_engine_losslessly(pair):
    """The asynchronous variant plans K from confidences `delay` steps back: greedy outputs stay
    the target's, its LoadMonitor is refined, steps that draft nothing advance it by `skip`."""
    target = pair[0]
    eng = _engine(pair, speculation="fixed")
    sched = _CountingAsync(LoadMonitor(eng.profile_step_cost(context_len=8, repeats=1)))
    eng.set_speculation("scheduler", scheduler=sched)
    assert eng.monitor is sched.sps
    eng.horizon.choose = lambda num_requests, step_time: eng.max_k  # always draft G
    prompts = [[1, 2, 3], [9, 8, 7, 6], [5] * 7]
    outs = eng.generate(prompts, _greedy(12))
    for p, o in zip(prompts, outs, strict=True):
        assert o == greedy_reference(target, torch.tensor([p]), 12)[0, len(p) :].tolist()
    assert sched.steps > sched.delay and eng.monitor.num_observations > 0
    # A horizon that never drafts: every decode step is a skip.
    eng.horizon.choose = lambda num_requests, step_time: 0
    before = sched.steps
    outs = eng.generate(prompts[:1], _greedy(6))
    assert outs[0] == greedy_reference(target, torch.tensor([prompts[0]]), 6)[0, 3:].tolist()
    assert sched.steps == before and sched.skips >= 5
    assert eng.num_free_pages == eng.runner.cache.num_pages
    auto = _engine(pair, speculation="fixed").auto_scheduler(16, asynchronous=True, delay=1)
    assert isinstance(auto, AsyncPrefixScheduler) and auto.delay == 1


def test_set_speculation_switches_between_runs_only(pair):
    eng = _engine(pair, speculation="fixed", num_draft_tokens=2)
    assert (eng.speculation, eng.k) == ("fixed", 2)
    want = eng.generate([[4, 5, 6]], _greedy(10))
    for mode, k in (("none", None), ("fixed", 1), ("fixed", 3), ("scheduler", None)):
        eng.set_speculation(mode, k)
        assert eng.generate([[4, 5, 6]], _greedy(10)) == want, mode
    assert eng.k == 3 and eng.monitor is not None
    eng.add_request([1, 2], _greedy(5))
    with pytest.raises(RuntimeError, match="in flight"):
        eng.set_speculation("none")
    with pytest.raises(ValueError, match=r"num_draft_tokens: expected an integer in \[1, 3\]"):
        Engine(pair[0], pair[1], num_draft_tokens=4, max_model_len=64)
    with pytest.raises(ValueError, match="needs a drafter"):
        Engine(pair[0], max_model_len=64).set_speculation("fixed", 1)


def _max_step_tokens(pair, sps, slo):
    eng = _engine(pair, speculation="scheduler", scheduler=PrefixScheduler(sps))
    ids = [eng.add_request([3, i + 1], _greedy(12)) for i in range(3)]
    eng.requests[ids[0]].tpot_slo = slo
    most = 0
    while eng.has_unfinished():
        eng.step()
        if eng.last_step["decode"] == 3:
            most = max(most, sum(eng.last_step["lengths"]) + 3)
    return most


def test_tpot_slo_caps_the_step_tokens(pair):
    """Tokens are nearly free up to 12 per step, but a 1.1 ms TPOT target allows 4 at most."""
    sps = SpsTable.from_step_times([1, 4, 12, 16], [0.001, 0.0011, 0.0012, 0.05])
    assert _max_step_tokens(pair, sps, None) > 4  # the scheduler alone verifies longer drafts
    # step_time(12) = 1.2 ms fits 1.1 ms * (1 + accepted drafts per step) only from 0.09
    # accepted per step, which the random drafter does not reach: the budget is 4 tokens.
    assert _max_step_tokens(pair, sps, 0.0011) <= 4
    eng = _engine(pair, speculation="fixed")
    with pytest.raises(ValueError, match="tpot_slo: expected seconds > 0"):
        eng.add_request([1], _greedy(2), tpot_slo=0.0)


def test_logprobs_are_the_targets_log_softmax(pair):
    target = pair[0]
    eng = _engine(pair, speculation="fixed")
    rid = eng.add_request([7, 3, 9], _greedy(6), logprobs=True)
    got: list[float] = []
    while eng.has_unfinished():
        for out in eng.step():
            assert out.logprobs is not None and len(out.logprobs) == len(out.new_token_ids)
            got += out.logprobs
    seq = torch.tensor([[7, 3, 9, *eng.requests[rid].output_token_ids]])
    with torch.no_grad():
        logp = torch.log_softmax(target(seq).logits[0].float(), -1)
    want = [logp[2 + i, t].item() for i, t in enumerate(seq[0, 3:].tolist())]
    assert got == pytest.approx(want, abs=1e-4)
