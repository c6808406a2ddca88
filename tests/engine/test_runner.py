"""The paged model runner against the Hugging Face model's own dense forward."""

from __future__ import annotations

import pytest
import torch
import transformers

from dspark.engine import ModelRunner, OutOfPages, StepRequest
from dspark.integrations.hf_compat import cache_kwargs
from dspark.models import target_features
from tests._tiny import tiny_gemma3, tiny_llama, tiny_qwen3


def tiny(kind: str, sliding_window: int | None = None):
    """3-layer tiny targets of each family (head dim 64, a verify_attention kernel size)."""
    if kind == "qwen3":
        return tiny_qwen3(vocab=97, layers=3, logit_scale=5.0)
    if kind == "llama":
        return tiny_llama(vocab=97, layers=3)
    return tiny_gemma3(vocab=97, layers=3, sliding_window=sliding_window or 512)


KINDS = ["qwen3", "llama", "gemma3"]


@torch.no_grad()
def dense(model, ids: torch.Tensor) -> torch.Tensor:
    return model(ids[None]).logits[0]


def close(a, b):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


DIRECT = pytest.mark.parametrize("direct", [True, False], ids=["direct", "hf-call"])


@DIRECT
@pytest.mark.parametrize("kind", KINDS)
def test_runner_ragged_steps_match_dense_forward(kind, direct):
    model = tiny(kind)
    runner = ModelRunner(model, num_pages=40, page_size=4, direct=direct)
    assert (runner.direct is not None) == direct
    g = torch.Generator().manual_seed(1)
    seqs = {
        r: torch.randint(0, 97, (n,), generator=g) for r, n in zip("abc", [7, 1, 13], strict=True)
    }
    out = runner.run([StepRequest(r, s, logits="all") for r, s in seqs.items()])
    ptr = out.logits_indptr.tolist()
    for i, s in enumerate(seqs.values()):
        close(out.logits[ptr[i] : ptr[i + 1]], dense(model, s))
    # Decode / verify steps of different widths, crossing page boundaries.
    for widths in ([1, 4, 2], [5, 1, 3]):
        new = {
            r: torch.randint(0, 97, (w,), generator=g) for r, w in zip("abc", widths, strict=True)
        }
        out = runner.run([StepRequest(r, t, logits="all") for r, t in new.items()])
        ptr = out.logits_indptr.tolist()
        for i, (r, t) in enumerate(new.items()):
            seqs[r] = torch.cat([seqs[r], t])
            close(out.logits[ptr[i] : ptr[i + 1]], dense(model, seqs[r])[-len(t) :])
    assert [runner.cache.length(r) for r in "abc"] == [len(s) for s in seqs.values()]


@DIRECT
@pytest.mark.parametrize("kind", KINDS)
def test_runner_rollback_by_length(kind, direct):
    model = tiny(kind)
    runner = ModelRunner(model, num_pages=12, page_size=4, direct=direct)
    prompt = torch.randint(0, 97, (6,))
    runner.run([StepRequest(0, prompt)])
    draft = torch.randint(0, 97, (5,))
    runner.run([StepRequest(0, draft, logits="all")])
    runner.cache.truncate(0, 6 + 2)  # keep 2 of the 5 drafted slots
    nxt = torch.randint(0, 97, (3,))
    out = runner.run([StepRequest(0, nxt, logits="all")])
    seq = torch.cat([prompt, draft[:2], nxt])
    close(out.logits, dense(model, seq)[-3:])
    assert len(runner.cache.pages(0)) == runner.cache.pages_for(11)


@DIRECT
@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_runner_tree_matches_dense_mask_and_keeps_a_path(kind, direct):
    model = tiny(kind)
    runner = ModelRunner(model, num_pages=16, page_size=4, direct=direct)
    prefix = torch.randint(0, 97, (9,))
    runner.run([StepRequest("r", prefix)])
    parents = torch.tensor([-1, 0, 0, 1, 1, 2, 4], dtype=torch.int32)  # anchor + 6 nodes
    toks = torch.randint(0, 97, (7,))
    out = runner.run([StepRequest("r", toks, parents=parents, logits="all")])
    # Reference: the HF model with a dense additive 4-D mask and depth positions.
    depth = torch.tensor([0, 1, 1, 2, 2, 2, 3])
    anc = torch.eye(7, dtype=torch.bool)
    for i, p in enumerate(parents.tolist()):
        if p >= 0:
            anc[i] |= anc[p]
    visible = torch.cat([torch.ones(7, 9, dtype=torch.bool), anc], dim=1)
    mask = torch.zeros(1, 1, 7, 16).masked_fill(
        ~visible[None, None], torch.finfo(torch.float32).min
    )
    with torch.no_grad():
        cache = transformers.DynamicCache(config=model.config)
        model(prefix[None], **cache_kwargs(model, cache), use_cache=True)
        ref = model(
            toks[None],
            attention_mask=mask,
            position_ids=(9 + depth)[None],
            **cache_kwargs(model, cache),
            use_cache=True,
        ).logits[0]
    close(out.logits, ref)
    # Accept the path anchor -> node 1 -> node 4 -> node 6 (rows 0, 1, 4, 6): slots become contiguous.
    runner.cache.keep("r", 9, [0, 1, 4, 6])
    nxt = torch.randint(0, 97, (2,))
    out = runner.run([StepRequest("r", nxt, logits="all")])
    close(out.logits, dense(model, torch.cat([prefix, toks[[0, 1, 4, 6]], nxt]))[-2:])


@DIRECT
def test_runner_sliding_window_gemma3(direct):
    model = tiny("gemma3", sliding_window=6)
    runner = ModelRunner(model, num_pages=20, page_size=4, direct=direct)
    seq = torch.randint(0, 97, (15,))
    out = runner.run([StepRequest(0, seq[:10], logits="all")])
    close(out.logits, dense(model, seq[:10]))
    out = runner.run([StepRequest(0, seq[10:], logits="all")])
    close(out.logits, dense(model, seq)[10:])


@DIRECT
def test_runner_features_and_selected_logits(direct):
    model = tiny("qwen3")
    runner = ModelRunner(model, num_pages=8, page_size=8, feature_layers=[-1, 0, 1], direct=direct)
    ids = torch.randint(0, 97, (11,))
    out = runner.run([StepRequest(0, ids, logits=torch.tensor([2, 10]))])
    with torch.no_grad():
        ref = model(ids[None], output_hidden_states=True)
    close(out.logits, ref.logits[0, [2, 10]])
    close(out.features, target_features(ref.hidden_states, [-1, 0, 1])[0])
    assert out.logits_indptr.tolist() == [0, 2]
    # No hooks on the direct path; on the model(...) path they are inert outside run().
    assert bool(runner._handles) != direct
    model(ids[None])
    assert runner._captured == {}
    runner.close()
    assert runner._handles == []


def test_page_accounting_and_out_of_pages():
    model = tiny("llama")
    runner = ModelRunner(model, num_pages=5, page_size=4)
    cache = runner.cache
    runner.run([StepRequest("a", torch.arange(9)), StepRequest("b", torch.arange(5))])
    assert cache.num_free_pages == 5 - 3 - 2
    with pytest.raises(OutOfPages, match="free pages"):
        runner.run([StepRequest("a", torch.arange(8))])
    assert cache.length("a") == 9 and cache.num_free_pages == 0  # nothing was appended
    cache.truncate("a", 4)
    assert cache.num_free_pages == 2
    for r in cache.requests:
        cache.free(r)
    assert cache.num_free_pages == cache.num_pages and cache.requests == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_pages": 0}, "num_pages"), ({"num_pages": 4, "page_size": 2.5}, "page_size")],
)
def test_runner_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelRunner(tiny("llama"), **kwargs)


def test_runner_rejects_unsupported_head_dim():
    cfg = transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        intermediate_size=64,
    )
    with pytest.raises(ValueError, match="head dim"):
        ModelRunner(transformers.LlamaForCausalLM(cfg), num_pages=4)
