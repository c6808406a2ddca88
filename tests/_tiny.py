"""Tiny randomly initialised Hugging Face targets for tests (built in-process, no downloads)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM


def tiny_qwen3(
    vocab: int = 256,
    layers: int = 4,
    hidden: int = 64,
    seed: int = 0,
    logit_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> Qwen3ForCausalLM:
    """A Qwen3 causal LM: 4 heads (2 KV heads) of dim 16, MLP 128, eager-free (sdpa) attention.

    ``logit_scale`` multiplies the LM head so the random model is peaked rather than uniform
    (a uniform target makes every drafter look perfect).
    """
    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, intermediate_size=128, max_position_embeddings=512,
        tie_word_embeddings=False, eos_token_id=None, pad_token_id=None,
    )
    model = Qwen3ForCausalLM(cfg).eval().to(dtype)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    return model


def tiny_llama(vocab: int = 256, layers: int = 3, hidden: int = 64, seed: int = 0) -> LlamaForCausalLM:
    """A Llama causal LM (no q/k norm): the second family through the same drafter code."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, intermediate_size=128, max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).eval()


def greedy_reference(target, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The target's own greedy decoding by full recomputation each step (no cache, obviously
    correct): returns [B, L + max_new_tokens]."""
    seq = input_ids.clone()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = target(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq
