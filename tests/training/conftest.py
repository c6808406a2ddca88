"""Fixtures for training tests: a tiny Qwen3 target with a byte-level chat tokenizer, on disk."""

from __future__ import annotations

import json

import pytest

from tests._tiny import CHAT_TEMPLATE, tiny_qwen3, tiny_tokenizer

__all__ = ["CHAT_TEMPLATE", "CONVERSATIONS", "tiny_tokenizer"]

CONVERSATIONS = [
    [
        {"role": "user", "content": f"question {i}: count from {i}"},
        {"role": "assistant", "content": " ".join(str(i + k) for k in range(6 + i % 5))},
        {"role": "user", "content": "and again"},
        {"role": "assistant", "content": "ab" * (4 + i % 3) + " done"},
    ]
    for i in range(8)
]


@pytest.fixture(scope="session")
def target_dir(tmp_path_factory):
    """A tiny Qwen3 (vocab 260 >= the tokenizer's 258) saved with its tokenizer."""
    d = tmp_path_factory.mktemp("target")
    model = tiny_qwen3(vocab=260, layers=4, logit_scale=8.0)
    model.save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def target(target_dir):
    from dspark.models import load_target

    return load_target(target_dir)


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "train.jsonl"
    p.write_text("".join(json.dumps({"conversations": c}) + "\n" for c in CONVERSATIONS))
    return p
