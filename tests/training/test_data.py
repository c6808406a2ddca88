"""Conversation loading and tokenisation with an assistant-only loss mask."""

from __future__ import annotations

import json

import pytest
import torch

from dspark.training.data import load_conversations, render_prompt, tokenize_conversation
from tests.training.conftest import CONVERSATIONS, tiny_tokenizer


def _masked_text(tok, sample):
    ids = sample.input_ids[sample.loss_mask].tolist()
    return tok.decode(ids)


def test_loss_mask_covers_exactly_the_assistant_turns():
    tok = tiny_tokenizer()
    conv = CONVERSATIONS[3]
    s = tokenize_conversation(tok, conv)
    assert s.input_ids.shape == s.loss_mask.shape
    # Independent reference: the assistant contents plus their end-of-turn markers, in order.
    expected = "".join(m["content"] + "<|im_end|>\n" for m in conv if m["role"] == "assistant")
    assert _masked_text(tok, s) == expected
    # The prompt with generation header is exactly the unmasked prefix before the first answer.
    first = int(torch.nonzero(s.loss_mask)[0])
    assert s.input_ids[:first].tolist() == render_prompt(tok, conv[:1])


def test_system_prompt_is_consistent_between_training_and_prompts():
    tok = tiny_tokenizer()
    conv = CONVERSATIONS[0]
    s = tokenize_conversation(tok, conv, system_prompt="Be brief.")
    first = int(torch.nonzero(s.loss_mask)[0])
    assert s.input_ids[:first].tolist() == render_prompt(tok, conv[:1], system_prompt="Be brief.")
    assert s.input_ids[:first].tolist() != render_prompt(tok, conv[:1])
    # No insertion when the data already has a system message.
    own = [{"role": "system", "content": "X"}, *conv]
    a = tokenize_conversation(tok, own, system_prompt="Be brief.")
    b = tokenize_conversation(tok, own)
    assert torch.equal(a.input_ids, b.input_ids)


def test_truncation():
    tok = tiny_tokenizer()
    s = tokenize_conversation(tok, CONVERSATIONS[0], max_length=20)
    assert s.input_ids.shape == (20,)
    with pytest.raises(ValueError, match="max_length"):
        tokenize_conversation(tok, CONVERSATIONS[0], max_length=1)


def test_load_conversations_formats_and_errors(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(
        json.dumps({"conversations": CONVERSATIONS[0]})
        + "\n\n"
        + json.dumps({"turns": ["hi", "more"]})
        + "\n"
    )
    got = list(load_conversations(p))
    assert got[0] == CONVERSATIONS[0]
    assert got[1] == [{"role": "user", "content": "hi"}, {"role": "user", "content": "more"}]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"conversations": [{"role": "bot", "content": "x"}]}\n')
    with pytest.raises(ValueError, match=r"b.jsonl:1"):
        list(load_conversations(bad))
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="invalid JSON"):
        list(load_conversations(bad))
    bad.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="conversations"):
        list(load_conversations(bad))
    with pytest.raises(FileNotFoundError):
        list(load_conversations(tmp_path / "missing.jsonl"))
