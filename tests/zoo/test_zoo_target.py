"""The zoo's build pipeline at toy scale: corpus, tokenizer, exact resume, validated caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests._tiny import tiny_zoo_target_config

from dspark.zoo.build import build_target, load_tokens
from dspark.zoo.corpus import build_corpus
from dspark.zoo.target_lm import TargetTrainConfig, train_target

TINY = tiny_zoo_target_config(num_layers=2, total_steps=6)


def test_corpus_has_code_and_prose_and_heldout_split():
    c = build_corpus(max_files=40, heldout_fraction=0.2)
    assert c.train["code"] and c.train["prose"]
    assert c.heldout["code"]
    assert not set(c.train["code"]) & set(c.heldout["code"])


def test_zoo_target_build_resume_is_exact(tmp_path):
    stream = np.random.default_rng(0).integers(0, 300, size=5000).astype(np.uint16)
    full = train_target(tmp_path / "a", TINY, stream, progress=False)
    part = train_target(tmp_path / "b", TINY, stream, stop_after=3, progress=False)
    assert part["steps"] == 3 and not part["done"]
    resumed = train_target(tmp_path / "b", TINY, stream, progress=False)
    assert resumed["done"] and resumed["final_loss"] == full["final_loss"]
    a = torch.load(tmp_path / "a" / "checkpoint" / "state.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint" / "state.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rec = json.loads((tmp_path / "a" / "train_record.json").read_text())
    assert rec["steps"] == TINY.total_steps and len(rec["loss_curve"]) >= 1


def test_zoo_target_rejects_checkpoint_of_another_config(tmp_path):
    stream = np.random.default_rng(0).integers(0, 300, size=5000).astype(np.uint16)
    train_target(tmp_path, TINY, stream, stop_after=2, progress=False)
    other = TargetTrainConfig(**{**TINY.__dict__, "lr": 1e-4})
    with pytest.raises(ValueError, match="another config"):
        train_target(tmp_path, other, stream, progress=False)


def test_zoo_build_end_to_end_and_token_cache_validation(tmp_path):
    rec = build_target(tmp_path, cfg=TINY, max_files=15, progress=False)
    assert rec["done"]
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    model = Qwen3ForCausalLM.from_pretrained(tmp_path / "target" / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    ids = tok("def main():", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == TINY.vocab_size
    assert (tmp_path / "prompts" / "code.jsonl").exists()
    # a corrupted token cache is detected, not silently used
    with np.load(tmp_path / "tokens.npz") as f:
        tokens, digest = f["tokens"].copy(), str(f["sha256"])
    tokens[0] ^= 1
    np.savez(tmp_path / "tokens.npz", tokens=tokens, sha256=digest)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_tokens(tmp_path / "tokens.npz")
