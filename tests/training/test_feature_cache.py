"""Target cache: round trip, compact storage, corruption and mismatch detection, size estimate."""

from __future__ import annotations

import json

import pytest
import torch

from dspark.training.data import tokenize_conversation
from dspark.training.feature_cache import TargetCache, estimate_bytes_per_token
from dspark.training.prepare import build_cache
from tests._tiny import tiny_qwen3
from tests.training.conftest import CONVERSATIONS, tiny_tokenizer

LAYERS = [0, 1, 2]


def _build(target, path, **kw):
    kw = {"batch_size": 3, "shard_tokens": 300, **kw}
    return build_cache(target, tiny_tokenizer(), CONVERSATIONS, path, LAYERS, **kw)


def _reference(target, conv):
    """Unbatched, unpadded target run through output_hidden_states (independent of hooks)."""
    s = tokenize_conversation(tiny_tokenizer(), conv)
    with torch.no_grad():
        out = target(s.input_ids[None], output_hidden_states=True)
    feat = torch.cat([out.hidden_states[i + 1][0] for i in LAYERS], dim=-1)
    # Hugging Face's last hidden_states entry is already the post-norm final state.
    return s, feat, out.hidden_states[-1][0]


@pytest.mark.parametrize(("fdt", "tol"), [("float32", 1e-5), ("bfloat16", 2e-2), ("fp8", 7e-2)])
def test_round_trip(target, tmp_path, fdt, tol):
    m = _build(target, tmp_path / "c", feature_dtype=fdt, last_dtype=fdt)
    assert len(m["shards"]) > 1  # several shards exercised
    cache = TargetCache(tmp_path / "c", verify=True)
    assert len(cache) == len(CONVERSATIONS)
    for i in (0, 5, 7):
        s, feat, last = _reference(target, CONVERSATIONS[i])
        got = cache[i]
        assert torch.equal(got["input_ids"], s.input_ids)
        assert torch.equal(got["loss_mask"], s.loss_mask)
        scale = feat.abs().amax(-1, keepdim=True)
        assert ((got["features"] - feat).abs() <= tol * scale + 1e-5).all()
        need = torch.zeros_like(s.loss_mask)
        need[:-1] = s.loss_mask[1:]
        assert (got["last_hidden"][~need] == 0).all()
        ls = last.abs().amax(-1, keepdim=True)
        assert ((got["last_hidden"][need] - last[need]).abs() <= tol * ls[need] + 1e-5).all()


def test_bytes_per_token(target, tmp_path):
    m = _build(
        target, tmp_path / "c", feature_dtype="fp8", last_dtype="bfloat16", shard_tokens=10**6
    )
    frac = m["num_last_rows"] / m["num_tokens"]
    est = estimate_bytes_per_token(64, len(LAYERS), "fp8", "bfloat16", frac)
    # Payload estimate vs measured file size (the difference is the safetensors header/offsets).
    assert est <= m["bytes_per_token"] < est * 1.25
    # Qwen3-4B shape (d=2560, 5 feature layers): the reference stores 30,726 B/token.
    assert estimate_bytes_per_token(2560, 5) == 30725
    assert estimate_bytes_per_token(2560, 5, "fp8", "fp8", 1.0) == 5 + 6 * 2560 + 24
    with pytest.raises(ValueError, match="feature_dtype"):
        estimate_bytes_per_token(64, 3, "int3")


def test_corruption_is_detected(target, tmp_path):
    path = tmp_path / "c"
    m = _build(target, path)
    shard = path / m["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    TargetCache(path, verify=False)  # sizes still match: only the checksum sees a flipped byte
    with pytest.raises(ValueError, match="checksum"):
        TargetCache(path)  # verified by default
    shard.write_bytes(bytes(data[:-5]))
    with pytest.raises(ValueError, match="truncated"):
        TargetCache(path)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        TargetCache(path)
    (path / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        TargetCache(path)


def test_manifest_and_mismatch_errors(target, tmp_path):
    path = tmp_path / "c"
    _build(target, path)
    man = json.loads((path / "manifest.json").read_text())
    assert man["feature_layers"] == LAYERS
    assert man["target"]["hidden_size"] == 64
    cache = TargetCache(path)
    cache.check_compatible(target, LAYERS)
    with pytest.raises(ValueError, match="feature layers"):
        cache.check_compatible(target, [0, 1])
    other = tiny_qwen3(vocab=260, layers=4, seed=1)
    with pytest.raises(ValueError, match="different target"):
        cache.check_compatible(other, LAYERS)
    with pytest.raises(FileExistsError):
        _build(target, path)
    man["version"] = 99
    (path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="version"):
        TargetCache(path)


def test_writer_rejects_bad_input(target, tmp_path):
    from dspark.training.feature_cache import CacheWriter

    with pytest.raises(ValueError, match="feature_dtype"):
        CacheWriter(tmp_path / "c", target, LAYERS, feature_dtype="int4")
    w = CacheWriter(tmp_path / "c", target, LAYERS)
    ids = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(5, 192\)"):
        w.add(ids, torch.ones(5, dtype=torch.bool), torch.zeros(5, 64), torch.zeros(5, 64))
    with pytest.raises(FileNotFoundError, match="unfinished"):
        TargetCache(tmp_path / "c")  # nothing closed yet: no manifest
