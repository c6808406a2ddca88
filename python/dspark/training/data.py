"""Conversation data: reading JSONL/turns files and tokenising with an assistant-only loss mask.

The same :func:`render_prompt` builds evaluation prompts, so the system prompt is handled
identically in training and evaluation (the reference inserts "You are a helpful assistant."
only when caching, never when generating answers or evaluating).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["TokenizedSample", "load_conversations", "render_prompt", "tokenize_conversation"]

_ROLES = {"user", "assistant", "system"}


def _normalise(record: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "conversations" in record:
        conv = record["conversations"]
        if not isinstance(conv, list) or not conv:
            raise ValueError(f"{where}: 'conversations' must be a non-empty list")
        out = []
        for m in conv:
            if not isinstance(m, dict) or m.get("role") not in _ROLES or "content" not in m:
                raise ValueError(
                    f"{where}: each message needs role in {sorted(_ROLES)} and content, got {m!r}"
                )
            out.append({"role": m["role"], "content": str(m["content"])})
        return out
    if "turns" in record:
        turns = record["turns"]
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"{where}: 'turns' must be a non-empty list of user turns")
        # A prompt file: user turns only (answers are produced by regeneration).
        return [{"role": "user", "content": str(t)} for t in turns]
    raise ValueError(f"{where}: expected a 'conversations' or 'turns' field, got {sorted(record)}")


def load_conversations(path: str | Path) -> Iterator[list[dict[str, str]]]:
    """Yield conversations (lists of ``{"role", "content"}``) from a JSONL file, in file order.

    Accepts ``{"conversations": [...]}`` records and ``{"turns": [...]}`` prompt records (user
    turns only). Blank lines are skipped; malformed lines raise ValueError naming the line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: {p} does not exist")
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: invalid JSON ({e.msg})") from None
            yield _normalise(rec, f"{p}:{n}")


def _with_system(messages: list[dict[str, str]], system_prompt: str | None):
    if system_prompt is None or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def render_prompt(
    tokenizer: Any, messages: Sequence[dict[str, str]], system_prompt: str | None = None
) -> list[int]:
    """Token ids of a prompt ready for the next assistant turn (training's exact convention).

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerBase with a chat template
    messages : list of {"role", "content"}
        Ends with a user turn.
    system_prompt : str, optional
        Inserted when the conversation has none (same rule as :func:`tokenize_conversation`).
    """
    text = tokenizer.apply_chat_template(
        _with_system(list(messages), system_prompt), tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class TokenizedSample:
    """One tokenised conversation: ``input_ids`` (S,) int64 and ``loss_mask`` (S,) bool."""

    input_ids: torch.Tensor
    loss_mask: torch.Tensor


def tokenize_conversation(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    *,
    system_prompt: str | None = None,
    max_length: int = 4096,
) -> TokenizedSample:
    """Render with the chat template and mark assistant tokens (through the end-of-turn marker).

    The assistant spans are found by rendering prefixes of the conversation (the prompt with the
    generation header, then the prompt plus the answer), so no template-specific regex is
    needed; a template whose prefixes are not prefixes of the full rendering raises ValueError.

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerFast
        Needs a chat template and offset mapping (a "fast" tokenizer).
    messages : list of {"role", "content"}
    system_prompt : str, optional
        Inserted when the conversation has none; ``None`` keeps the data as is.
    max_length : int
        Truncate to this many tokens.

    Returns
    -------
    TokenizedSample
    """
    if max_length < 2:
        raise ValueError(f"max_length: expected >= 2, got {max_length}")
    msgs = _with_system(list(messages), system_prompt)

    def render(m, gen):
        return tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=gen)

    full = render(msgs, False)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before, after = render(msgs[:i], True), render(msgs[: i + 1], False)
        if not (full.startswith(before) and full.startswith(after)):
            raise ValueError(
                "tokenizer: chat template renderings of conversation prefixes are not prefixes of "
                "the full conversation; cannot locate assistant spans"
            )
        spans.append((len(before), len(after)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor(enc["input_ids"][:max_length], dtype=torch.long)
    starts = torch.tensor([o[0] for o in enc["offset_mapping"][:max_length]], dtype=torch.long)
    mask = torch.zeros(ids.shape[0], dtype=torch.bool)
    for lo, hi in spans:
        mask |= (starts >= lo) & (starts < hi)
    return TokenizedSample(ids, mask)
