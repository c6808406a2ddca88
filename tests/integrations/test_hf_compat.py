"""The transformers keyword shim: chosen from the model's real forward signature."""

from __future__ import annotations

import warnings

import torch

from dspark.integrations.hf_compat import cache_keyword, cache_kwargs
from tests._tiny import tiny_qwen3


class _OldStyle(torch.nn.Module):
    def forward(self, input_ids, past_key_values=None, use_cache=None):
        return past_key_values


class _NewStyle(torch.nn.Module):
    def forward(self, input_ids, cache=None, use_cache=None):
        return cache


def test_cache_keyword_follows_the_signature():
    assert cache_keyword(_OldStyle()) == "past_key_values"
    assert cache_keyword(_NewStyle()) == "cache"
    sentinel = object()
    assert _OldStyle()(None, **cache_kwargs(_OldStyle(), sentinel)) is sentinel
    assert _NewStyle()(None, **cache_kwargs(_NewStyle(), sentinel)) is sentinel


def test_installed_transformers_takes_the_cache_without_a_warning():
    from transformers import DynamicCache

    model = tiny_qwen3(vocab=64, layers=1)
    cache = DynamicCache(config=model.config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any FutureWarning/DeprecationWarning fails
        model(torch.tensor([[1, 2, 3]]), **cache_kwargs(model, cache), use_cache=True)
        model(torch.tensor([[4]]), **cache_kwargs(model, cache), use_cache=True)
    assert cache.get_seq_length() == 4
