"""RaggedKVCache: per-request writes, rollback and batch selection against a plain list model."""

from __future__ import annotations

import pytest
import torch

from dspark.models.kv_cache import RaggedKVCache


def test_ragged_cache_matches_per_request_lists():
    cache = RaggedKVCache(num_layers=1, batch=3, device=torch.device("cpu"))
    ref: list[list[torch.Tensor]] = [[], [], []]
    for step, counts in enumerate([[3, 0, 5], [2, 4, 1], [70, 1, 0]]):  # 70 forces a regrow
        n = max(counts)
        k = torch.randn(3, 2, n, 4) + step
        c = torch.tensor(counts)
        cache.write(0, k, k * 2, c)
        cache.advance(c)
        for b in range(3):
            ref[b].extend(k[b, :, i] for i in range(counts[b]))
    assert cache.lengths.tolist() == [len(r) for r in ref]
    keys, values = cache.get(0, cache.max_length())
    for b in range(3):
        for j, row in enumerate(ref[b]):
            assert torch.equal(keys[b, :, j], row)
            assert torch.equal(values[b, :, j], 2 * row)
    assert cache.valid(cache.max_length()).sum(1).tolist() == cache.lengths.tolist()
    cache.truncate(torch.tensor([1, 2, 3]))
    assert cache.lengths.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="lengths"):
        cache.truncate(torch.tensor([2, 2, 3]))
    cache.select(torch.tensor([2, 0]))
    assert cache.lengths.tolist() == [3, 1]
    assert torch.equal(cache.get(0, 3)[0][0, :, :3], torch.stack(ref[2][:3], dim=1))
