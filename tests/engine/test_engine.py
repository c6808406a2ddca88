"""The continuous-batching engine: outputs equal each prompt decoded alone, pages never leak."""

from __future__ import annotations

import pytest
import torch

from dspark import SamplingParams
from dspark.engine.engine import Engine
from dspark.engine.request import FinishReason
from dspark.models import Drafter, DrafterConfig, Proposal, build_drafter
from tests._tiny import greedy_reference, tiny_qwen3


def Params(max_tokens: int, **kw) -> SamplingParams:
    """Greedy by default, seed 0: the tests compare with the target's greedy decoding."""
    return SamplingParams(**{"temperature": 0.0, "seed": 0, "max_tokens": max_tokens, **kw})


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3(logit_scale=20.0)


def _prompts(n_each, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in n_each]


@pytest.mark.parametrize(
    ("num_pages", "max_num_seqs", "budget"),
    [(40, 8, 512), (12, 3, 16), (5, 3, 16)],  # roomy; chunked prefill + queueing; preemption
)
def test_engine_greedy_equals_each_prompt_alone(target, num_pages, max_num_seqs, budget):
    prompts = _prompts([5, 19, 3, 11, 7])
    lens = [9, 4, 20, 13, 6]
    eng = Engine(
        target,
        num_pages=num_pages,
        page_size=8,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget,
        max_model_len=64,
    )
    outs = eng.generate(prompts, [Params(m) for m in lens])
    for p, o, m in zip(prompts, outs, lens, strict=True):
        assert o == greedy_reference(target, torch.tensor([p]), m)[0, len(p) :].tolist()
    assert eng.num_free_pages == num_pages and not eng.running and not eng.waiting
    if num_pages == 5:
        assert any(r.num_preemptions for r in eng.requests.values())


def test_engine_requests_join_mid_flight(target):
    """Arrival order does not change outputs: requests added between steps."""
    prompts = _prompts([6, 9, 4, 12], seed=3)
    eng = Engine(target, num_pages=40, page_size=8, max_model_len=64)
    ids = [eng.add_request(prompts[0], Params(10))]
    eng.step()
    eng.step()
    ids.append(eng.add_request(prompts[1], Params(7)))
    eng.step()
    ids += [eng.add_request(p, Params(5)) for p in prompts[2:]]
    while eng.has_unfinished():
        eng.step()
    for rid, p, m in zip(ids, prompts, [10, 7, 5, 5], strict=True):
        ref = greedy_reference(target, torch.tensor([p]), m)[0, len(p) :].tolist()
        assert eng.requests[rid].output_token_ids == ref


def test_engine_stop_tokens_abort_and_accounting(target):
    prompt = _prompts([8], seed=5)[0]
    ref = greedy_reference(target, torch.tensor([prompt]), 12)[0, len(prompt) :].tolist()
    eng = Engine(target, num_pages=20, page_size=8, max_model_len=64)
    a = eng.add_request(prompt, Params(12, stop=(ref[3],)))
    b = eng.add_request(prompt, Params(12))
    eng.step()
    eng.abort(b)
    while eng.has_unfinished():
        eng.step()
    stop_at = ref.index(ref[3])
    assert eng.requests[a].output_token_ids == ref[: stop_at + 1]
    assert eng.requests[a].finish_reason is FinishReason.STOP
    assert eng.requests[b].finish_reason is FinishReason.ABORT
    assert eng.num_free_pages == 20


@pytest.mark.parametrize(
    ("prompt", "params", "match"),
    [
        ([], Params(4), "prompt_token_ids"),
        ([1, 300], Params(4), "prompt_token_ids"),
        ([1, 2], Params(100), "max_tokens"),
    ],
)
def test_engine_rejects_bad_requests(target, prompt, params, match):
    eng = Engine(target, num_pages=8, max_model_len=64)
    with pytest.raises(ValueError, match=match):
        eng.add_request(prompt, params)


def test_engine_rejects_bad_settings(target):
    with pytest.raises(ValueError, match="speculation"):
        Engine(target, speculation="sometimes")
    with pytest.raises(ValueError, match="drafter"):
        Engine(target, speculation="fixed")
    with pytest.raises(ValueError, match="max_num_seqs"):
        Engine(target, max_num_seqs=0)


class ReplayOracle(Drafter):
    """Proposes the known greedy continuation: the perfect drafter, found by matching each row's
    committed history against the reference sequences (rows join in any order)."""

    def __init__(self, target, refs: list[list[int]], block_size: int = 4, wrong_every: int = 0):
        cfg = DrafterConfig.for_target("dflash", target.config, num_layers=1, block_size=block_size)
        super().__init__(cfg, target)
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.refs, self.wrong_every = refs, wrong_every

    def new_state(self, batch):
        return {"hist": [[] for _ in range(batch)]}

    def select(self, state, indices):
        state["hist"] = [state["hist"][i] for i in indices.tolist()]

    def join(self, state, other):
        state["hist"] += other["hist"]

    def commit(self, state, features, next_tokens, counts):
        for b, n in enumerate(counts.tolist()):
            state["hist"][b].extend(next_tokens[b, :n].tolist())

    def propose(
        self, state, anchor, *, temperature, top_k=None, top_p=None, generator=None, num_tokens=None
    ):
        g = num_tokens or self.config.block_size
        toks = []
        for h in state["hist"]:
            ref = next(r for r in self.refs if r[1 : len(h) + 1] == h)
            nxt = (ref[len(h) + 1 :] + [0] * g)[:g]
            if self.wrong_every:
                nxt = [
                    (t + 1) % 256 if (len(h) + i) % self.wrong_every == 0 else t
                    for i, t in enumerate(nxt)
                ]
            toks.append(nxt)
        v = self.config.vocab_size
        return Proposal(torch.tensor(toks), torch.zeros(len(toks), g, v), torch.ones(len(toks), g))


@pytest.mark.parametrize("wrong_every", [0, 3])
@pytest.mark.parametrize("num_pages", [40, 6])
def test_engine_speculative_greedy_equals_alone(target, wrong_every, num_pages):
    prompts = _prompts([5, 19, 3, 11, 7], seed=1)
    lens = [9, 4, 20, 13, 6]
    refs = [
        greedy_reference(target, torch.tensor([p]), m + 8)[0].tolist()
        for p, m in zip(prompts, lens, strict=True)
    ]
    drafter = ReplayOracle(target, refs, wrong_every=wrong_every)
    eng = Engine(
        target,
        drafter,
        speculation="fixed",
        num_draft_tokens=4,
        num_pages=num_pages,
        page_size=8,
        max_num_seqs=3,
        max_num_batched_tokens=24,
        max_model_len=64,
    )
    outs = eng.generate(prompts, [Params(m) for m in lens])
    for o, r, p, m in zip(outs, refs, prompts, lens, strict=True):
        assert o == r[len(p) : len(p) + m]
    drafted = sum(sum(r.drafted) for r in eng.requests.values())
    accepted = sum(sum(r.accepted) for r in eng.requests.values())
    assert drafted > 0
    assert (accepted == drafted) == (wrong_every == 0)
    assert eng.num_free_pages == num_pages and eng._rows.decoding() == []


@pytest.mark.parametrize("kind", ["dspark", "dflash", "eagle3"])
def test_engine_real_drafters_stay_lossless(target, kind):
    """Untrained drafters (near-zero acceptance) through the real propose/commit/join code."""
    drafter = build_drafter(kind, target, num_layers=1, block_size=3)
    prompts = _prompts([6, 13, 4], seed=2)
    eng = Engine(
        target,
        drafter,
        speculation="fixed",
        num_pages=30,
        page_size=8,
        max_num_seqs=2,
        max_num_batched_tokens=12,
        max_model_len=64,
    )
    outs = eng.generate(prompts, [Params(7), Params(5), Params(9)])
    for o, p, m in zip(outs, prompts, [7, 5, 9], strict=True):
        assert o == greedy_reference(target, torch.tensor([p]), m)[0, len(p) :].tolist()
    assert eng.num_free_pages == 30
