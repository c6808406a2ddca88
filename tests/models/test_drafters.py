"""Drafter construction, shared frozen parts, and train/inference consistency on tiny targets."""

from __future__ import annotations

import pytest
import torch

from dspark.models import (
    DSparkDrafter,
    Eagle3Drafter,
    block_targets,
    build_drafter,
    default_feature_layers,
    target_features,
)
from dspark.models.heads import RNNHead
from tests._tiny import tiny_qwen3

SMALL = {"dspark": {"num_layers": 2, "markov_rank": 16}, "dflash": {"num_layers": 2}, "eagle3": {}}


def _build(kind, target, **kw):
    return build_drafter(kind, target, block_size=4, **{**SMALL[kind], **kw})


def _features(target, drafter, ids):
    with torch.no_grad():
        out = target(ids, output_hidden_states=True)
    return target_features(out.hidden_states, drafter.config.feature_layers)


def test_default_feature_layers_match_reference():
    assert default_feature_layers(36) == [1, 9, 17, 25, 33]
    assert default_feature_layers(40) == [1, 10, 19, 28, 37]
    assert default_feature_layers(4) == [0, 1, 2]
    assert default_feature_layers(2) == [0]


@pytest.mark.parametrize("kind", ["dspark", "dflash", "eagle3"])
@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_build_drafter_shares_frozen_parts(kind, family, qwen3_target, llama_target):
    target = qwen3_target if family == "qwen3" else llama_target
    d = _build(kind, target)
    assert d.kind == kind
    assert d.config.target["vocab_size"] == 256
    params = {id(p) for p in d.parameters()}
    assert id(target.get_input_embeddings().weight) not in params
    assert id(target.get_output_embeddings().weight) not in params
    assert not any("embed_tokens" in k or "lm_head" in k for k in d.state_dict())
    assert d.config.qk_norm == (family == "qwen3")
    # A proposal round works end to end on this family's blocks.
    ids = torch.randint(0, 256, (2, 9))
    st = d.new_state(2)
    d.commit(st, _features(target, d, ids), torch.roll(ids, -1, 1), torch.tensor([9, 6]))
    prop = d.propose(st, ids[:, -1], temperature=torch.tensor([1.0, 0.0]))
    assert prop.tokens.shape == (2, 4)
    assert prop.draft_logits.shape == (2, 4, 256)
    assert (prop.confidence is not None) == (kind == "dspark")


@pytest.mark.parametrize(
    ("overrides", "exc", "match"),
    [
        ({"feature_layers": [3]}, ValueError, "feature_layers"),
        ({"feature_layers": []}, ValueError, "feature_layers"),
        ({"hidden_size": 32}, ValueError, "hidden_size"),
        ({"mask_token_id": 256}, ValueError, "mask_token_id"),
        ({"head_type": "lstm"}, ValueError, "head_type"),
        ({"markov_rank": 0}, ValueError, "markov_rank"),
        ({"num_key_value_heads": 3}, ValueError, "num_key_value_heads"),
        ({"no_such_option": 1}, TypeError, "no_such_option"),
    ],
)
def test_build_drafter_rejects_bad_options(qwen3_target, overrides, exc, match):
    with pytest.raises(exc, match=match):
        build_drafter("dspark", qwen3_target, **overrides)


def test_build_drafter_rejects_bad_kind_and_target(qwen3_target):
    with pytest.raises(ValueError, match="kind"):
        build_drafter("medusa", qwen3_target)
    with pytest.raises(TypeError, match="target"):
        build_drafter("dflash", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="num_layers"):
        build_drafter("eagle3", qwen3_target, num_layers=2)


def _packed(target, drafter, lengths):
    ids = [torch.randint(0, 256, (n,)) for n in lengths]
    feats = [_features(target, drafter, x[None])[0] for x in ids]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    return torch.cat(ids), torch.cat(feats), cu, ids, feats


@pytest.mark.parametrize("kind", ["dflash", "dspark"])
def test_block_train_forward_matches_inference(kind, qwen3_target):
    """Packed training forward (index masks, two sequences) equals the cached inference pass."""
    torch.manual_seed(1)
    d = (
        _build(kind, qwen3_target, head_type="rnn")
        if kind == "dspark"
        else _build(kind, qwen3_target)
    )
    ids, feats, cu, seqs, seq_feats = _packed(qwen3_target, d, [11, 8])
    anchors = torch.tensor([3, 10, 11 + 2, 11 + 5])  # two blocks per sequence, one at the very end
    labels, valid = block_targets(ids, cu, anchors, 4)
    assert valid[1].tolist() == [False] * 4
    assert valid[3].tolist() == [True, True, False, False]
    with torch.no_grad():
        out = d.forward_train(feats, ids, cu, anchors, labels if kind == "dspark" else None)
    for b, a in enumerate(anchors.tolist()):
        s = 0 if a < 11 else 1
        p = a - int(cu[s])
        st = d.new_state(1)
        d.commit(st, seq_feats[s][None, :p], seqs[s][None, 1 : p + 1], torch.tensor([p]))
        with torch.no_grad():
            h = d.block_forward(st, seqs[s][p : p + 1], 4)
        torch.testing.assert_close(out.hidden[b], h[0], atol=1e-5, rtol=1e-4)
        if kind == "dspark":
            # Teacher-forced Markov logits = the sequential sampler's logits given the same tokens.
            prev = torch.cat([seqs[s][p : p + 1], labels[b, :-1]])
            state = d.head.init_state(1, h)
            for k in range(4):
                bias, state = d.head.step_bias(h[:, k], prev[k : k + 1], state)
                exp = d.compute_logits(h[:, k]) + bias
                torch.testing.assert_close(out.markov_logits[b, k], exp[0], atol=1e-4, rtol=1e-4)
    assert out.confidence_logits is None or out.confidence_logits.shape == (4, 4)
    with torch.no_grad():  # chunking the blocks is exact
        chunked = d.forward_train(
            feats, ids, cu, anchors, labels if kind == "dspark" else None, block_chunk=3
        )
    torch.testing.assert_close(chunked.logits, out.logits)


def test_dspark_training_outputs_and_gradients(qwen3_target):
    d = _build("dspark", qwen3_target)
    ids, feats, cu, _, _ = _packed(qwen3_target, d, [9])
    anchors = torch.tensor([1, 4])
    labels, _ = block_targets(ids, cu, anchors, 4)
    out = d.forward_train(feats, ids, cu, anchors, labels)
    assert out.markov_logits.shape == (2, 4, 256)
    assert out.confidence_logits.shape == (2, 4)
    (out.markov_logits.logsumexp(-1).sum() + out.confidence_logits.sum()).backward()
    assert d.head.w1.weight.grad is not None
    assert d.confidence.proj.weight.grad is not None
    assert qwen3_target.lm_head.weight.grad is None  # shared LM head untouched by the drafter
    with pytest.raises(ValueError, match="teacher_tokens"):
        d.forward_train(feats, ids, cu, anchors)


def test_rnn_head_block_equals_steps_and_keeps_state(qwen3_target):
    d = _build("dspark", qwen3_target, head_type="rnn")
    assert isinstance(d.head, RNNHead)
    h, prev = torch.randn(3, 5, 64), torch.randint(0, 256, (3, 5))
    with torch.no_grad():
        block = d.head.block_bias(h, prev)
        state = None
        for k in range(5):
            b, state = d.head.step_bias(h[:, k], prev[:, k], state)
            torch.testing.assert_close(block[:, k], b)
        # A stateless step (the reference's single-step bug) gives different biases after step 1.
        b0, _ = d.head.step_bias(h[:, 2], prev[:, 2], None)
    assert not torch.allclose(b0, block[:, 2])


def test_eagle3_ttt_matches_autoregressive_drafting(qwen3_target):
    """TTT step s at the last context position = autoregressive draft step s (greedy)."""
    torch.manual_seed(2)
    d = _build("eagle3", qwen3_target)
    assert isinstance(d, Eagle3Drafter)
    seq = torch.randint(0, 256, (10,))
    c = 6  # last context position; the anchor is seq[c + 1]
    st = d.new_state(1)
    feats = _features(qwen3_target, d, seq[None])
    d.commit(st, feats[:, : c + 1], seq[None, 1 : c + 2], torch.tensor([c + 1]))
    prop = d.propose(st, seq[c + 1 : c + 2], temperature=torch.zeros(1))
    assert int(st.cache.lengths[0]) == c + 1  # draft entries rolled back
    # Teacher-force the drafted tokens: sequence = context + anchor + drafts.
    full = torch.cat([seq[: c + 2], prop.tokens[0]])
    f_full = torch.cat([feats[0, : c + 1], torch.zeros(full.shape[0] - c - 1, feats.shape[-1])])
    with torch.no_grad():
        out = d.forward_train(f_full, full, torch.tensor([0, full.shape[0]]), ttt_steps=4)
    for s in range(4):
        torch.testing.assert_close(out.logits[s, c], prop.draft_logits[0, s], atol=1e-4, rtol=1e-4)
        assert bool(out.valid[s, c])
        assert int(out.labels[s, c]) == int(full[c + 2 + s])


def test_dspark_is_dflash_plus_heads(qwen3_target):
    d = _build("dspark", qwen3_target)
    assert isinstance(d, DSparkDrafter)
    assert d.confidence is not None
    names = dict(d.named_parameters())
    assert names["head.w1.weight"].shape == (256, 16)
    assert names["head.w2.weight"].shape == (256, 16)
    assert names["confidence.proj.weight"].shape == (1, 64 + 16)
    assert names["mask_embedding"].requires_grad


def test_position_weights_match_reference(qwen3_target):
    d = _build("dspark", qwen3_target)
    w = build_drafter("dspark", qwen3_target, markov_rank=8).config.position_weights()
    assert [round(x, 3) for x in w] == [1.0, 0.779, 0.607, 0.472, 0.368, 0.287, 0.223]
    assert len(d.config.position_weights()) == 4


@pytest.mark.parametrize("family", ["qwen3", "llama", "gemma3"])
def test_feature_capture_equals_hidden_states(family, qwen3_target, llama_target):
    from dspark.models.features import FeatureCapture
    from tests._tiny import tiny_gemma3

    target = {"qwen3": qwen3_target, "llama": llama_target}.get(family) or tiny_gemma3()
    layers = [-1, 0, 1]
    ids = torch.randint(0, 256, (2, 6))
    with torch.no_grad(), FeatureCapture(target, layers) as cap:
        out = target(ids, output_hidden_states=True)
    torch.testing.assert_close(cap.features(), target_features(out.hidden_states, layers))
    with pytest.raises(ValueError, match="feature_layers"):
        FeatureCapture(target, [len(target.model.layers) - 1])


def test_eagle3_ttt_packing_is_exact(qwen3_target):
    """Two packed sequences give the same TTT logits as each sequence alone (index masks)."""
    d = _build("eagle3", qwen3_target)
    ids, feats, cu, seqs, seq_feats = _packed(qwen3_target, d, [7, 9])
    with torch.no_grad():
        packed = d.forward_train(feats, ids, cu, ttt_steps=3)
        for s, (lo, hi) in enumerate([(0, 7), (7, 16)]):
            alone = d.forward_train(seq_feats[s], seqs[s], torch.tensor([0, hi - lo]), ttt_steps=3)
            valid = alone.valid
            assert torch.equal(packed.valid[:, lo:hi], valid)
            assert torch.equal(packed.labels[:, lo:hi][valid], alone.labels[valid])
            torch.testing.assert_close(
                packed.logits[:, lo:hi][valid], alone.logits[valid], atol=1e-5, rtol=1e-4
            )
        chunked = d.forward_train(feats, ids, cu, ttt_steps=3, query_chunk=5)
    torch.testing.assert_close(chunked.logits, packed.logits, atol=1e-5, rtol=1e-4)


def test_drafter_protocol(qwen3_target):
    twin = tiny_qwen3(vocab=256, layers=4)  # the fixture's shapes, another instance
    for kind, tree, conf in (
        ("dspark", False, True),
        ("dflash", False, False),
        ("eagle3", True, False),
    ):
        d = build_drafter(kind, qwen3_target, num_layers=1)
        assert (d.supports_tree, d.has_confidence) == (tree, conf)
        assert d.is_bound_to(qwen3_target) and not d.is_bound_to(twin)
        d.attach(twin)
        assert d.is_bound_to(twin) and not d.is_bound_to(qwen3_target)
        if not tree:
            with pytest.raises(NotImplementedError, match="chains only"):
                d.propose_tree(None, torch.zeros(1, dtype=torch.long), None)
