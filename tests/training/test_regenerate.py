"""Answer regeneration: turn-by-turn, in-order output, exact resume, backends (no network)."""

from __future__ import annotations

import json

import pytest

from dspark.training.regenerate import LocalBackend, OpenAIBackend, regenerate
from tests.training.conftest import CONVERSATIONS, tiny_tokenizer


class FakeBackend:
    """Deterministic answers that encode the prompt they saw; fails after ``fail_after`` calls."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def answer(self, prompts):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("server died")
        self.calls += 1
        return [f"A{len(p)}:{p[-1]['content']}" for p in prompts]


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_turn_by_turn_and_in_order(tmp_path):
    out = tmp_path / "gen.jsonl"
    assert regenerate(CONVERSATIONS, FakeBackend(), out, batch_size=3) == len(CONVERSATIONS)
    recs = _read(out)
    assert [r["id"] for r in recs] == list(range(len(CONVERSATIONS)))
    for r, conv in zip(recs, CONVERSATIONS, strict=True):
        users = [m["content"] for m in conv if m["role"] == "user"]
        got = r["conversations"]
        assert [m["role"] for m in got] == ["user", "assistant"] * len(users)
        # The k-th answer saw the regenerated history (2k + 1 messages) and the k-th user turn.
        for k, u in enumerate(users):
            assert got[2 * k + 1]["content"] == f"A{2 * k + 1}:{u}"


def test_resume_after_interruption_and_torn_line(tmp_path):
    ref = tmp_path / "ref.jsonl"
    regenerate(CONVERSATIONS, FakeBackend(), ref, batch_size=3)
    out = tmp_path / "gen.jsonl"
    with pytest.raises(RuntimeError, match="died"):
        regenerate(CONVERSATIONS, FakeBackend(fail_after=3), out, batch_size=3)
    assert len(_read(out)) == 3  # only whole batches are written
    with out.open("a") as f:
        f.write('{"id": 3, "conv')  # a torn write
    assert regenerate(CONVERSATIONS, FakeBackend(), out, batch_size=3) == len(CONVERSATIONS) - 3
    assert out.read_text() == ref.read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 5}\n')
    with pytest.raises(ValueError, match="id"):
        regenerate(CONVERSATIONS, FakeBackend(), bad)


def test_openai_backend_payload_and_order():
    seen = []

    def post(url, payload):
        seen.append((url, payload))
        return {"choices": [{"message": {"content": "re:" + payload["messages"][-1]["content"]}}]}

    be = OpenAIBackend("http://h:1/", "m", concurrency=4, system_prompt="S", post=post)
    prompts = [[{"role": "user", "content": str(i)}] for i in range(10)]
    assert be.answer(prompts) == [f"re:{i}" for i in range(10)]
    url, payload = seen[0]
    assert url == "http://h:1/v1/chat/completions"
    assert payload["model"] == "m"
    assert payload["messages"][0] == {"role": "system", "content": "S"}
    bad = OpenAIBackend("http://h", "m", post=lambda u, p: {"error": "x"})
    with pytest.raises(ValueError, match="unexpected response"):
        bad.answer(prompts[:1])


def test_local_backend_generates_with_the_target(target, tmp_path):
    import torch

    from dspark.training.data import render_prompt
    from tests._tiny import greedy_reference

    tok = tiny_tokenizer()
    be = LocalBackend(target, tok, max_new_tokens=5, temperature=0.0)
    prompts = [CONVERSATIONS[0][:1], CONVERSATIONS[5][:3]]  # different lengths: left padding
    texts = be.answer(prompts)
    for p, text in zip(prompts, texts, strict=True):
        ids = torch.tensor([render_prompt(tok, p)])
        ref = greedy_reference(target, ids, 5)[0, ids.shape[1] :].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id)]
        assert text == tok.decode(ref, skip_special_tokens=True)
