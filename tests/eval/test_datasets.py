"""Prompt files and formatting: the shared format, sampling, chat templates and bad input."""

from __future__ import annotations

import json

import pytest

from dspark.eval import ByteTokenizer, Prompt, encode_prompt, load_prompts


def test_load_prompts_turns_and_input_ids(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"turns": ["a", "b"]}\n\n{"input_ids": [3, 4]}\n')
    ps = load_prompts(f)
    assert [(p.index, p.text, p.input_ids) for p in ps] == [(0, "a", None), (2, None, (3, 4))]
    assert ps[0].digest != ps[1].digest


def test_load_prompts_sampling_is_seeded_and_in_file_order(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"turns": [f"q{i}"]}) + "\n" for i in range(20)))
    a = load_prompts(f, max_samples=5, seed=7)
    assert [p.index for p in a] == [p.index for p in load_prompts(f, max_samples=5, seed=7)]
    assert len(a) == 5
    assert [p.index for p in a] == sorted(p.index for p in a)
    assert [p.index for p in a] != [p.index for p in load_prompts(f, max_samples=5, seed=8)]
    assert len(load_prompts(f, max_samples=50)) == 20


def test_shared_eval_prompts_parse():
    from pathlib import Path

    f = Path("/work/shared/data/eval_prompts/mt-bench.jsonl")
    if not f.is_file():
        pytest.skip("shared prompt sets not present")
    ps = load_prompts(f)
    assert len(ps) == 80
    assert all(p.text for p in ps)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"turns": ["ok"]}\n{"turns": ["broken"\n', r"p\.jsonl:2 is not valid JSON"),
        ('["a"]\n', "expected a JSON object"),
        ('{"question": "x"}\n', "turns"),
        ('{"turns": []}\n', "turns"),
        ('{"turns": [""]}\n', "first turn is empty"),
        ('{"input_ids": []}\n', "input_ids"),
        ('{"input_ids": [1, -2]}\n', "input_ids"),
        ('{"input_ids": [1, 2.5]}\n', "input_ids"),
        ("\n\n", "holds no prompts"),
    ],
)
def test_load_prompts_malformed(tmp_path, content, match):
    f = tmp_path / "p.jsonl"
    f.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_prompts(f)


def test_load_prompts_missing_file_and_bad_max_samples(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        load_prompts(tmp_path / "nope.jsonl")
    f = tmp_path / "p.jsonl"
    f.write_text('{"turns": ["a"]}\n')
    with pytest.raises(ValueError, match="max_samples"):
        load_prompts(f, max_samples=0)


class _ChatTok:
    """Stub with the Hugging Face tokenizer calls encode_prompt uses."""

    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, *, tokenize, add_generation_prompt, enable_thinking):
        assert not tokenize
        assert add_generation_prompt
        assert not enable_thinking
        assert messages == [{"role": "user", "content": "hi"}]  # no system prompt
        return "<u>hi</u><a>"

    def __call__(self, text, add_special_tokens):
        assert not add_special_tokens  # the template already holds the special tokens
        return {"input_ids": [len(text), 1]}

    def encode(self, text):
        return [99]


def test_encode_prompt_uses_chat_template_else_encode():
    p = Prompt(0, "hi", None)
    assert encode_prompt(p, _ChatTok()) == [len("<u>hi</u><a>"), 1]
    assert encode_prompt(p, _ChatTok(), chat_template=False) == [99]
    assert encode_prompt(Prompt(1, "hi", (5, 6)), None) == [5, 6]
    with pytest.raises(ValueError, match="tokenizer"):
        encode_prompt(p, None)


def test_byte_tokenizer_stays_in_vocab():
    tok = ByteTokenizer(50, offset=2)
    ids = tok.encode("héllo wörld")
    assert len(ids) == len("héllo wörld".encode())
    assert all(2 <= t < 50 for t in ids)
    with pytest.raises(ValueError, match="vocab_size"):
        ByteTokenizer(2, offset=1)


def test_encode_prompt_with_a_real_hf_tokenizer_and_chat_template():
    """The transformers API path (template rendered as text, then tokenised once)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "user": 3, "assistant": 4, "hello": 5, "there": 6}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", additional_special_tokens=["<s>", "</s>"]
    )
    tok.chat_template = (
        "{% for m in messages %}<s> {{ m.role }} {{ m.content }} </s> {% endfor %}"
        "{% if add_generation_prompt %}<s> assistant{% endif %}"
    )
    assert encode_prompt(Prompt(0, "hello there", None), tok) == [1, 3, 5, 6, 2, 1, 4]
    tok.chat_template = None
    assert encode_prompt(Prompt(0, "hello there", None), tok) == [5, 6]
