"""The runner's direct forward (dspark.engine.forward) against the HF model's own dense forward."""

from __future__ import annotations

import pytest
import torch
import transformers

from dspark.engine import ModelRunner, StepRequest
from dspark.engine.forward import DirectForward
from dspark.models import target_features
from tests._tiny import _shape, tiny_gemma3, tiny_qwen3


def close(a, b):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@torch.no_grad()
def dense(model, ids: torch.Tensor, **kw):
    return model(ids[None], **kw)


def family(kind: str, **over):
    """Tiny 2-layer targets of the families the direct forward lists beyond the runner tests'."""
    torch.manual_seed(0)
    shape = {**_shape(97, 64, 2), **over}
    if kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**shape))
    elif kind == "mistral":
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**shape))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape))
    with torch.no_grad():
        model.lm_head.weight.mul_(5.0)
    return model.eval()


def run_chunks(runner, seq: torch.Tensor, cuts: list[int], feature_layers=()):
    """Feed ``seq`` in chunks; return every row's logits and features."""
    logits, feats, start = [], [], 0
    for end in [*cuts, len(seq)]:
        out = runner.run([StepRequest(0, seq[start:end], logits="all")])
        logits.append(out.logits)
        feats.append(out.features)
        start = end
    return torch.cat(logits), (torch.cat(feats) if feature_layers else None)


@pytest.mark.parametrize("kind", ["qwen2", "mistral"])
def test_direct_forward_other_families(kind):
    model = family(kind)
    runner = ModelRunner(model, num_pages=12, page_size=4, feature_layers=[-1, 0])
    assert runner.direct is not None
    seq = torch.randint(0, 97, (19,))
    logits, feats = run_chunks(runner, seq, [7, 8, 12], feature_layers=[-1, 0])
    ref = dense(model, seq, output_hidden_states=True)
    close(logits, ref.logits[0])
    close(feats, target_features(ref.hidden_states, [-1, 0])[0])


def test_direct_forward_gemma3_softcap_and_scaled_embedding_feature():
    model = tiny_gemma3(vocab=97, layers=3, sliding_window=5)
    model.config.final_logit_softcapping = 3.0  # the head's cap (off by default)
    runner = ModelRunner(model, num_pages=12, page_size=4, feature_layers=[-1, 1])
    assert runner.direct is not None and runner.direct.typed_rope
    seq = torch.randint(0, 97, (14,))
    logits, feats = run_chunks(runner, seq, [9], feature_layers=[-1, 1])
    ref = dense(model, seq, output_hidden_states=True)
    assert ref.logits.abs().max() <= 3.0
    close(logits, ref.logits[0])
    close(feats, target_features(ref.hidden_states, [-1, 1])[0])


def test_direct_forward_rope_table_grows_past_its_first_size():
    model = tiny_qwen3(vocab=97, layers=2, logit_scale=5.0)
    runner = ModelRunner(model, num_pages=40, page_size=16)
    seq = torch.randint(0, 97, (300,))  # the first table covers 256 positions
    runner.run([StepRequest(0, seq[:250], logits="none")])
    assert runner.direct._tables[None][0].shape[0] == 256
    out = runner.run([StepRequest(0, seq[250:], logits="all")])
    assert runner.direct._tables[None][0].shape[0] == 512
    close(out.logits, dense(model, seq).logits[0, 250:])


def test_direct_forward_dynamic_rope_calls_the_module():
    over = {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}}
    model = family("llama", max_position_embeddings=16, **over)
    runner = ModelRunner(model, num_pages=12, page_size=4)
    assert not runner.direct.static_rope
    # Past max_position_embeddings the frequencies depend on the call's longest position, so
    # only one call over all 24 tokens equals the dense forward.
    seq = torch.randint(0, 97, (24,))
    logits, _ = run_chunks(runner, seq, [])
    close(logits, dense(model, seq).logits[0])
    short = torch.randint(0, 97, (12,))
    logits, _ = run_chunks(runner := ModelRunner(model, num_pages=12, page_size=4), short, [5])
    close(logits, dense(model, short).logits[0])


def test_direct_forward_matches_the_hf_call_path_on_a_ragged_tree_step():
    model = tiny_qwen3(vocab=97, layers=3, logit_scale=5.0)
    a = ModelRunner(model, num_pages=20, page_size=4, feature_layers=[0, 1])
    b = ModelRunner(model, num_pages=20, page_size=4, feature_layers=[0, 1], direct=False)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 97, (n,), generator=g) for n in (5, 9, 1)]
    tree = torch.tensor([-1, 0, 0, 1, 2], dtype=torch.int32)
    steps = [
        [StepRequest(i, p, logits="last") for i, p in enumerate(prompts)],
        [
            StepRequest(0, torch.randint(0, 97, (5,), generator=g), parents=tree, logits="all"),
            StepRequest(1, torch.randint(0, 97, (3,), generator=g), logits=torch.tensor([0, 2])),
            StepRequest(2, torch.randint(0, 97, (2,), generator=g), logits="none"),
        ],
    ]
    for step in steps:
        oa, ob = a.run(step), b.run(step)
        close(oa.logits, ob.logits)
        close(oa.features, ob.features)
        assert oa.logits_indptr.tolist() == ob.logits_indptr.tolist()
        for f in ("positions", "slot_mapping", "qo_indptr", "kv_len", "block_table"):
            assert torch.equal(getattr(oa.layout, f), getattr(ob.layout, f)), f
        assert list(oa.layout.qo_indptr_host) == oa.layout.qo_indptr.tolist()
    assert oa.layout.positions[:5].tolist() == [5 + d for d in (0, 1, 1, 2, 2)]  # tree depths
    assert oa.layout.parents.tolist() == [*tree.tolist(), -1, 0, 1, -1, 0]


def test_block_table_cache_follows_page_changes():
    model = tiny_qwen3(vocab=97, layers=2, logit_scale=5.0)
    runner = ModelRunner(model, num_pages=10, page_size=4)
    seqs = {r: torch.randint(0, 97, (6,)) for r in "ab"}
    runner.run([StepRequest(r, s) for r, s in seqs.items()])
    runner.cache.free("a")  # "a" comes back with other pages: the cached table must not be reused
    runner.run([StepRequest("c", torch.randint(0, 97, (9,)))])
    seqs["a"], more = torch.randint(0, 97, (3,)), torch.randint(0, 97, (3,))
    out = runner.run([StepRequest("a", seqs["a"], logits="all"), StepRequest("b", more)])
    assert out.layout.block_table[0].tolist()[:1] == runner.cache.pages("a")
    close(out.logits[:3], dense(model, seqs["a"]).logits[0])
    seqs["b"] = torch.cat([seqs["b"], more])
    nxt = torch.randint(0, 97, (2,))
    out = runner.run([StepRequest("b", nxt, logits="all")])
    close(out.logits, dense(model, torch.cat([seqs["b"], nxt])).logits[0, -2:])


def test_direct_forward_unsupported_family_and_bad_steps():
    cfg = transformers.GPT2Config(n_embd=128, n_head=2, n_layer=1, vocab_size=32)
    assert DirectForward.build(transformers.GPT2LMHeadModel(cfg)) is None
    gemma = tiny_gemma3(vocab=97, layers=1)
    gemma.config.model_type = "gemma2"  # a family the direct forward does not list
    with pytest.raises(ValueError, match="direct: the direct forward supports"):
        ModelRunner(gemma, num_pages=4, direct=True)
    runner = ModelRunner(tiny_qwen3(vocab=97, layers=1), num_pages=8, page_size=4)
    with pytest.raises(ValueError, match="distinct request ids"):
        runner.run([StepRequest(0, torch.arange(2)), StepRequest(0, torch.arange(3))])
    with pytest.raises(ValueError, match="parents: expected 3 entries"):
        runner.run([StepRequest(1, torch.arange(3), parents=torch.tensor([-1, 0]))])
    with pytest.raises(ValueError, match=r"parents: expected -1 <= parents\[1\] < 1"):
        runner.run([StepRequest(2, torch.arange(2), parents=torch.tensor([-1, 1]))])
    with pytest.raises(ValueError, match=r"logits: expected row offsets in \[0, 2\)"):
        runner.run([StepRequest(3, torch.arange(2), logits=torch.tensor([2]))])
    with pytest.raises(ValueError, match="tokens: expected a 1-D tensor"):
        runner.run([StepRequest(4, torch.arange(4).view(2, 2))])
    with pytest.raises(ValueError, match="feature_layers"):
        ModelRunner(tiny_qwen3(vocab=97, layers=2), num_pages=4, feature_layers=[1])


@pytest.mark.parametrize("direct", [True, False])
def test_run_restores_the_models_attention_implementation(direct):
    model = tiny_qwen3(vocab=97, layers=1)
    before = model.config._attn_implementation
    assert before != "dspark_paged"
    runner = ModelRunner(model, num_pages=4, page_size=4, direct=direct)
    runner.run([StepRequest(0, torch.arange(3))])
    assert model.config._attn_implementation == before
    with pytest.raises(ValueError, match="parents"):  # a failing step restores it too
        runner.run([StepRequest(0, torch.arange(2), parents=torch.tensor([0, 0]))])
    assert model.config._attn_implementation == before
    model(torch.arange(3)[None])  # the model still runs on its own attention
