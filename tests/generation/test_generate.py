"""dspark.generate / SpeculativeGenerator: greedy equality, per-request controls, statistics,
streaming, scheduler hooks and bad input."""

from __future__ import annotations

import pytest
import torch

import dspark
from dspark.generation import TargetRunner
from dspark.models import build_drafter
from tests._tiny import OracleDrafter, greedy_reference, padded_prompts, tiny_gemma3, tiny_qwen3

SMALL = {"dspark": {"num_layers": 1, "markov_rank": 16}, "dflash": {"num_layers": 1}, "eagle3": {}}


def _check_greedy(target, drafter, ids, mask, n, **kw):
    out = dspark.generate(
        target, drafter, ids, mask, max_new_tokens=n, temperature=0.0, seed=3, **kw
    )
    for b in range(ids.shape[0]):
        real = ids[b][mask[b].bool()][None]
        ref = greedy_reference(target, real, n)[0, real.shape[1] :]
        assert out.sequences[b, ids.shape[1] :].tolist() == ref.tolist(), b
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids)
    return out


@pytest.mark.parametrize("kind", ["dspark", "dflash", "eagle3"])
def test_generate_greedy_equals_target(peaked_target, kind):
    drafter = build_drafter(kind, peaked_target, block_size=4, **SMALL[kind])
    ids, mask = padded_prompts()
    out = _check_greedy(peaked_target, drafter, ids, mask, 12)
    assert out.num_generated.tolist() == [12, 12, 12]
    assert sum(sum(r.emitted) for r in out.rounds) + 3 == 36  # +3: the prefill's first tokens


@pytest.mark.parametrize("engine", ["hf", "paged"])
@pytest.mark.parametrize("corrupt", [0.0, 0.3])
def test_generate_greedy_with_partial_acceptance(peaked_target, corrupt, engine, monkeypatch):
    """A mostly-right drafter: accepted prefixes of every length, ragged rollbacks (and, on the
    HF cache, compaction of the holes they leave)."""
    drafter = OracleDrafter(peaked_target, block_size=4, corrupt=corrupt)
    ids, mask = padded_prompts()
    drafter.first_tokens = [int(ids[b][mask[b].bool()][0]) for b in range(3)]
    gen = dspark.SpeculativeGenerator(
        peaked_target, drafter, compact_ratio=1.0, compact_slack=0, engine=engine
    )
    compactions = []
    orig = TargetRunner._compact
    monkeypatch.setattr(TargetRunner, "_compact", lambda self: (compactions.append(1), orig(self)))
    out = gen.generate(ids, mask, max_new_tokens=16, temperature=0.0, seed=1)
    for b in range(3):
        real = ids[b][mask[b].bool()][None]
        ref = greedy_reference(peaked_target, real, 16)[0, real.shape[1] :]
        assert out.sequences[b, 7:].tolist() == ref.tolist()
    acc = [a for r in out.rounds for a in r.accepted]
    if corrupt == 0.0:
        assert out.acceptance_length > 4.0  # every draft matches the greedy target
        assert out.position_acceptance(4) == [1.0] * 4
    else:
        assert len(set(acc)) > 2
        assert bool(compactions) == (engine == "hf")
    for r in out.rounds:
        for p, a, f in zip(r.proposed, r.accepted, r.first_rejection, strict=False):
            assert 0 <= a <= p
            assert (f == -1) == (a == p)
            assert f == -1 or f == a + 1


def test_generate_per_request_limits_and_stops(peaked_target):
    drafter = build_drafter("dflash", peaked_target, block_size=3, num_layers=1)
    ids, mask = padded_prompts()
    ref = [
        greedy_reference(peaked_target, ids[b][mask[b].bool()][None], 10)[0, -10:] for b in range(3)
    ]
    stop = int(ref[1][4])  # request 1 stops at its 5th token (or earlier if it repeats)
    first = ref[1].tolist().index(stop)
    out = dspark.generate(
        peaked_target,
        drafter,
        ids,
        mask,
        max_new_tokens=[10, 10, 3],
        temperature=[0.0, 0.0, 0.0],
        stop_token_ids=[[], [stop], []],
        pad_token_id=-1,
    )
    assert out.num_generated.tolist() == [10, first + 1, 3]
    assert out.sequences[0, 7:].tolist() == ref[0].tolist()
    assert out.sequences[1, 7 : 7 + first + 1].tolist() == ref[1][: first + 1].tolist()
    assert (out.sequences[1, 7 + first + 1 :] == -1).all()
    assert (out.sequences[2, 10:] == -1).all()


def test_generate_streaming_matches_sequences(peaked_target):
    drafter = build_drafter("dspark", peaked_target, block_size=3, **SMALL["dspark"])
    ids, mask = padded_prompts()
    got: dict[int, list[int]] = {0: [], 1: [], 2: []}
    out = dspark.generate(
        peaked_target,
        drafter,
        ids,
        mask,
        max_new_tokens=8,
        temperature=1.0,
        seed=5,
        streamer=lambda r, toks: got[r].extend(toks),
    )
    for b in range(3):
        assert got[b] == out.sequences[b, 7:].tolist()
    gen = dspark.SpeculativeGenerator(peaked_target, drafter)
    events = list(gen.stream(ids, mask, max_new_tokens=8, temperature=1.0, seed=5))
    for b in range(3):
        assert [t for e in events if e.request == b for t in e.tokens] == got[b]
        assert [e.finished for e in events if e.request == b][-1]
    # Same seed, same output; another seed differs (sampling is really happening).
    again = dspark.generate(
        peaked_target, drafter, ids, mask, max_new_tokens=8, temperature=1.0, seed=5
    )
    other = dspark.generate(
        peaked_target, drafter, ids, mask, max_new_tokens=8, temperature=1.0, seed=6
    )
    assert torch.equal(again.sequences, out.sequences)
    assert not torch.equal(other.sequences, out.sequences)


def test_generate_scheduler_and_threshold(peaked_target):
    drafter = build_drafter("dspark", peaked_target, block_size=4, **SMALL["dspark"])
    ids, mask = padded_prompts()
    seen = []

    def sched(conf):
        seen.append(tuple(conf.shape))
        assert ((conf >= 0) & (conf <= 1)).all()
        return torch.tensor([i % 3 for i in range(conf.shape[0])], dtype=torch.int32)

    out = _check_greedy(peaked_target, drafter, ids, mask, 10, scheduler=sched)
    assert seen
    assert all(s[1] <= 4 for s in seen)
    assert all(p <= i % 3 for r in out.rounds for i, p in enumerate(r.proposed))

    class Obj:
        def schedule(self, conf):
            return torch.zeros(conf.shape[0], dtype=torch.int32)

    out = _check_greedy(peaked_target, drafter, ids, mask, 6, scheduler=Obj())
    assert all(p == 0 for r in out.rounds for p in r.proposed)
    out = _check_greedy(peaked_target, drafter, ids, mask, 6, confidence_threshold=1.0)
    assert all(p == 0 for r in out.rounds for p in r.proposed)  # survival < 1 always
    out = _check_greedy(peaked_target, drafter, ids, mask, 6, confidence_threshold=0.0)
    assert max(p for r in out.rounds for p in r.proposed) == 4


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"input_ids": torch.zeros(2, 0, dtype=torch.long)}, ValueError, "input_ids: empty"),
        ({"input_ids": torch.zeros(3, dtype=torch.long)}, ValueError, "input_ids"),
        ({"input_ids": torch.zeros(2, 3)}, TypeError, "input_ids"),
        ({"input_ids": torch.full((2, 3), 999)}, ValueError, "input_ids"),
        ({"attention_mask": torch.zeros(2, 3, dtype=torch.long)}, ValueError, "empty"),
        ({"attention_mask": torch.ones(2, 4)}, ValueError, "attention_mask"),
        ({"max_new_tokens": [4, 4, 4]}, ValueError, "max_new_tokens.*mismatched"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        ({"temperature": [1.0]}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"top_p": 0.0}, ValueError, "top_p"),
        ({"top_k": -2}, ValueError, "top_k"),
        ({"stop_token_ids": [[1], [2], [3]]}, ValueError, "stop_token_ids"),
    ],
)
def test_generate_rejects_bad_input(peaked_target, kwargs, exc, match):
    drafter = build_drafter("dflash", peaked_target, num_layers=1)
    args = {"input_ids": torch.ones(2, 3, dtype=torch.long), "max_new_tokens": 4, **kwargs}
    with pytest.raises(exc, match=match):
        dspark.generate(peaked_target, drafter, **args)


def test_generate_rejects_mismatched_drafter(peaked_target):
    other = tiny_qwen3(vocab=320, layers=4)
    drafter = build_drafter("dflash", other, num_layers=1)
    ids = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="vocab_size"):
        dspark.generate(peaked_target, drafter, ids, max_new_tokens=2)
    twin = tiny_qwen3(vocab=256, layers=4, logit_scale=20.0)  # same shapes, another instance
    with pytest.raises(ValueError, match="attach"):
        dspark.generate(
            twin, build_drafter("dflash", peaked_target, num_layers=1), ids, max_new_tokens=2
        )
    bound = build_drafter("dflash", peaked_target, num_layers=1)
    bound.attach(twin)  # same architecture, another instance: explicit re-binding works
    assert dspark.generate(twin, bound, ids, max_new_tokens=2).sequences.shape == (1, 5)
    with pytest.raises(ValueError, match="vocab_size"):
        bound.attach(other)
    with pytest.raises(ValueError, match="confidence"):
        dspark.generate(
            peaked_target,
            build_drafter("dflash", peaked_target, num_layers=1),
            ids,
            max_new_tokens=2,
            confidence_threshold=0.5,
        )
    with pytest.raises(TypeError, match="drafter"):
        dspark.generate(peaked_target, object(), ids, max_new_tokens=2)


@pytest.mark.parametrize("kind", ["dspark", "eagle3"])
def test_generate_gemma3_family(kind):
    """Gemma3 blocks go through the same code (scaled embedding, (1 + w) norms, GELU-tanh)."""
    target = tiny_gemma3()
    drafter = build_drafter(kind, target, block_size=3, **SMALL[kind])
    assert drafter.config.gemma_norm
    assert drafter.config.qk_norm
    ids = torch.randint(0, 256, (2, 5))
    out = dspark.generate(target, drafter, ids, max_new_tokens=8, temperature=0.0)
    assert torch.equal(out.sequences, greedy_reference(target, ids, 8))
    # Sliding-window layers: the HF cache cannot roll back past the window; the paged engine
    # keeps every page and masks in the kernel, so the output is the target's greedy.
    small = tiny_gemma3(sliding_window=8)
    small_drafter = build_drafter(kind, small, block_size=3, **SMALL[kind])
    with pytest.raises(ValueError, match="sliding-window"):
        dspark.SpeculativeGenerator(small, small_drafter, engine="hf").generate(
            ids, max_new_tokens=8, temperature=0.0
        )
    out = dspark.SpeculativeGenerator(small, small_drafter, engine="paged").generate(
        ids, max_new_tokens=8, temperature=0.0
    )
    assert torch.equal(out.sequences, greedy_reference(small, ids, 8))


def test_generate_bf16_drafter_on_fp32_target(peaked_target):
    """Drafter and target dtypes may differ; greedy output still equals the target's."""
    drafter = build_drafter("dspark", peaked_target, block_size=3, **SMALL["dspark"])
    drafter.to(torch.bfloat16)
    ids, mask = padded_prompts()
    _check_greedy(peaked_target, drafter, ids, mask, 6)


def test_generate_greedy_equals_transformers_generate(peaked_target):
    """Against Hugging Face's own greedy decoding (cached, one token per step)."""
    ids = torch.randint(0, 256, (2, 6))
    hf = peaked_target.generate(
        ids, do_sample=False, max_new_tokens=10, min_new_tokens=10, pad_token_id=0
    )
    drafter = build_drafter("eagle3", peaked_target, block_size=3)
    out = dspark.generate(peaked_target, drafter, ids, max_new_tokens=10, temperature=0.0)
    assert torch.equal(out.sequences, hf)


def test_paged_generation_returns_every_page(peaked_target, monkeypatch):
    """Requests that finish early leave the batch (their pages freed at once); at the end the
    pool is whole again."""
    from dspark.generation.paged_target import PagedTargetRunner

    seen = []
    orig_select, orig_close = PagedTargetRunner.select, PagedTargetRunner.close

    def select(self, indices):
        before = self.runner.cache.num_free_pages
        orig_select(self, indices)
        seen.append(self.runner.cache.num_free_pages > before)

    def close(self):
        orig_close(self)
        seen.append(self.runner.cache.num_free_pages == self.runner.cache.num_pages)

    monkeypatch.setattr(PagedTargetRunner, "select", select)
    monkeypatch.setattr(PagedTargetRunner, "close", close)
    drafter = OracleDrafter(peaked_target, block_size=4, corrupt=0.3)
    ids, mask = padded_prompts()
    drafter.first_tokens = [int(ids[b][mask[b].bool()][0]) for b in range(3)]
    out = dspark.SpeculativeGenerator(peaked_target, drafter, engine="paged").generate(
        ids, mask, max_new_tokens=[4, 16, 9], temperature=0.0, seed=1
    )
    assert out.num_generated.tolist() == [4, 16, 9]
    assert seen and all(seen)


def test_generate_takes_sampling_params(peaked_target):
    """One SamplingParams per request gives the same output as the equivalent keywords."""
    drafter = build_drafter("dspark", peaked_target, block_size=3, **SMALL["dspark"])
    ids, mask = padded_prompts()
    kw = dict(max_new_tokens=[5, 9, 3], temperature=[0.0, 1.0, 0.7], top_k=[0, 4, 0], seed=3)
    ref = dspark.generate(peaked_target, drafter, ids, mask, **kw)
    sp = [
        dspark.SamplingParams(max_tokens=5, temperature=0.0),
        dspark.SamplingParams(max_tokens=9, temperature=1.0, top_k=4),
        dspark.SamplingParams(max_tokens=3, temperature=0.7),
    ]
    out = dspark.generate(peaked_target, drafter, ids, mask, sampling=sp, seed=3)
    assert torch.equal(out.sequences, ref.sequences)
    with pytest.raises(ValueError, match="not both"):
        dspark.generate(peaked_target, drafter, ids, mask, sampling=sp, temperature=0.5)
    with pytest.raises(ValueError, match="max_tokens"):
        dspark.generate(peaked_target, drafter, ids, mask, sampling=dspark.SamplingParams())
    with pytest.raises(TypeError, match="max_new_tokens"):
        dspark.generate(peaked_target, drafter, ids, mask)
