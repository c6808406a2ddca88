"""The dspark attention implementation inside a stock transformers model (tiny, random weights).

The verification forward of a tree through dspark must give the same logits as the same model
running SDPA with the equivalent dense 4-D mask.
"""

from __future__ import annotations

import copy

import pytest
import torch

import dspark
from dspark.integrations.hf_attention import register_hf_attention
from dspark.integrations.hf_compat import cache_kwargs

transformers = pytest.importorskip("transformers")


def tiny_model(kind: str):
    common = dict(
        vocab_size=128,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
    )
    if kind == "qwen3":
        cfg = transformers.Qwen3Config(**common)
        model = transformers.Qwen3ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(**common)
        model = transformers.LlamaForCausalLM(cfg)
    model.set_attn_implementation("sdpa")
    return model.eval()


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_hf_tree_verification_matches_dense_mask(kind):
    torch.manual_seed(0)
    model = tiny_model(kind)
    B, prefix = 2, 21
    # Anchor + a 6-node tree per request (different trees), in verify_attention's query layout.
    parents = torch.tensor([[-1, 0, 0, 1, 1, 2, 5], [-1, 0, 1, 0, 3, 3, 4]], dtype=torch.int32)
    q = parents.shape[1]
    prompt = torch.randint(0, 128, (B, prefix))
    draft = torch.randint(0, 128, (B, q))
    with torch.no_grad():
        cache = transformers.DynamicCache(config=model.config)
        model(prompt, **cache_kwargs(model, cache), use_cache=True)
        qo_indptr = torch.arange(0, B * q + 1, q, dtype=torch.int32)
        kv_len = torch.full((B,), prefix + q, dtype=torch.int32)
        pos = dspark.tree_positions(parents.view(-1), qo_indptr, kv_len).view(B, q)

        # Reference: SDPA with a dense additive 4-D mask [B, 1, q, prefix + q].
        anc = dspark.tree_attention_mask(parents.view(-1), qo_indptr=qo_indptr, layout="dense")
        visible = torch.cat([torch.ones(B, q, prefix, dtype=torch.bool), anc.view(B, q, q)], dim=-1)
        mask = torch.zeros(B, 1, q, prefix + q).masked_fill(
            ~visible[:, None], torch.finfo(torch.float32).min
        )
        ref = model(
            draft,
            **cache_kwargs(model, copy.deepcopy(cache)),
            position_ids=pos,
            attention_mask=mask,
        ).logits

        name = register_hf_attention()
        model.set_attn_implementation(name)
        ours = model(
            draft,
            **cache_kwargs(model, copy.deepcopy(cache)),
            position_ids=pos,
            dspark_parents=parents,
        ).logits
        # The causal default (no parents) equals the chain reading of the same tokens.
        chain = model(draft, **cache_kwargs(model, copy.deepcopy(cache))).logits
        model.set_attn_implementation("sdpa")
        chain_ref = model(draft, **cache_kwargs(model, copy.deepcopy(cache))).logits
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(chain, chain_ref, atol=2e-5, rtol=1e-5)
    assert not torch.allclose(ours, chain, atol=1e-3)  # the tree mask really changed something


def test_hf_attention_rejects_dense_mask():
    from dspark.integrations.hf_attention import dspark_attention_forward

    qkv = torch.randn(1, 2, 3, 64)
    with pytest.raises(ValueError, match="attention_mask"):
        dspark_attention_forward(None, qkv, qkv, qkv, torch.zeros(1, 1, 3, 3))
