"""Depth up-scaling of the zoo target keeps its function exactly."""

from __future__ import annotations

import pytest
import torch
from tests._tiny import tiny_qwen3

from dspark.zoo.grow import grow_layers, seed_grown_checkpoint
from dspark.zoo.target_lm import TargetTrainConfig, train_target


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_grow_layers_keeps_the_logits(factor):
    model = tiny_qwen3(vocab=64, layers=2).eval()
    grown = grow_layers(model, factor).eval()
    assert len(grown.model.layers) == 2 * factor == grown.config.num_hidden_layers
    ids = torch.randint(0, 64, (2, 11))
    with torch.no_grad():
        ref, out = model(ids).logits, grown(ids).logits
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # The added blocks are real parameters, not shared with their originals.
    if factor > 1:
        a, b = grown.model.layers[0], grown.model.layers[1]
        assert a.self_attn.q_proj.weight.data_ptr() != b.self_attn.q_proj.weight.data_ptr()
        assert not b.self_attn.o_proj.weight.any()


@pytest.mark.parametrize("factor", [0, -1, 1.5, True])
def test_grow_layers_rejects_bad_factor(factor):
    with pytest.raises(ValueError, match="factor"):
        grow_layers(tiny_qwen3(vocab=64, layers=1), factor)


def test_grown_checkpoint_resumes_as_step_zero(tmp_path):
    small = TargetTrainConfig(
        vocab_size=64,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        intermediate_size=96,
        seq_len=16,
        batch_size=2,
        warmup=1,
        total_steps=2,
        checkpoint_every=1,
    )
    tokens = torch.randint(0, 64, (400,)).numpy().astype("uint16")
    train_target(tmp_path / "small", small, tokens, progress=False)
    deep = TargetTrainConfig(**{**small.__dict__, "num_layers": 4, "total_steps": 1})
    seed_grown_checkpoint(tmp_path / "small" / "model", tmp_path / "deep", deep)
    with pytest.raises(FileExistsError, match="resume"):
        seed_grown_checkpoint(tmp_path / "small" / "model", tmp_path / "deep", deep)
    rec = train_target(tmp_path / "deep", deep, tokens, progress=False)
    assert rec["done"] and rec["steps"] == 1
    bad = TargetTrainConfig(**{**small.__dict__, "num_layers": 3})
    with pytest.raises(ValueError, match="num_layers"):
        seed_grown_checkpoint(tmp_path / "small" / "model", tmp_path / "bad", bad)
