"""Benchmark prompt files and prompt formatting.

A prompt file is JSONL, one object per line: ``{"turns": ["first user message", ...]}`` (the
shared ``eval_prompts`` format; only ``turns[0]`` is used, as in the reference), or a
pre-tokenised record ``{"input_ids": [int, ...]}`` (tiny test targets have no tokenizer).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ByteTokenizer", "Prompt", "PromptEncoder", "encode_prompt", "load_prompts"]


@dataclass(frozen=True)
class Prompt:
    """One benchmark prompt.

    Attributes
    ----------
    index : int
        Line number (0-based) in the source file; stable under sampling.
    text : str or None
        First user turn (None for pre-tokenised records).
    input_ids : tuple of int or None
        Pre-tokenised prompt.
    """

    index: int
    text: str | None
    input_ids: tuple[int, ...] | None

    @property
    def digest(self) -> str:
        """Content hash: a cached result is reused only for the same prompt."""
        payload = json.dumps([self.text, self.input_ids]).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


class PromptEncoder(Protocol):
    """Anything with ``encode(text) -> list[int]`` (Hugging Face tokenizers qualify)."""

    def encode(self, text: str) -> list[int]: ...


class ByteTokenizer:
    """Fallback tokenizer for targets without one: UTF-8 bytes folded into ``[offset, vocab)``.

    Good enough to drive tiny test models through the text path; not meant for real models.
    """

    def __init__(self, vocab_size: int, offset: int = 0) -> None:
        if vocab_size - offset < 2:
            raise ValueError(f"vocab_size: expected > offset + 1 = {offset + 1}, got {vocab_size}")
        self.vocab_size, self.offset = int(vocab_size), int(offset)

    def encode(self, text: str) -> list[int]:
        span = self.vocab_size - self.offset
        return [self.offset + b % span for b in text.encode("utf-8")]


def _parse_line(path: Path, lineno: int, line: str) -> Prompt:
    where = f"{path}:{lineno + 1}"
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"prompts: {where} is not valid JSON ({e.msg})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"prompts: {where}: expected a JSON object, got {type(rec).__name__}")
    if "input_ids" in rec:
        ids = rec["input_ids"]
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids)
        ):
            raise ValueError(f"prompts: {where}: 'input_ids' must be a non-empty list of ints >= 0")
        text = rec["turns"][0] if isinstance(rec.get("turns"), list) and rec["turns"] else None
        return Prompt(lineno, text if isinstance(text, str) else None, tuple(ids))
    turns = rec.get("turns")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
        raise ValueError(
            f"prompts: {where}: expected {{'turns': [str, ...]}} or {{'input_ids': [int, ...]}}, "
            f"got keys {sorted(rec)}"
        )
    if not turns[0]:
        raise ValueError(f"prompts: {where}: the first turn is empty")
    return Prompt(lineno, turns[0], None)


def load_prompts(
    path: str | os.PathLike[str], *, max_samples: int | None = None, seed: int = 0
) -> list[Prompt]:
    """Read a benchmark JSONL file.

    Parameters
    ----------
    path : path-like
        ``{"turns": [...]}`` or ``{"input_ids": [...]}`` per line (blank lines are skipped).
    max_samples : int, optional
        Keep this many prompts, drawn by a ``random.Random(seed)`` shuffle when the file is
        larger (the reference protocol), returned in file order.
    seed : int

    Returns
    -------
    list of Prompt

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Malformed lines (with file and line number), an empty file, or ``max_samples < 1``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompts: no such file: {p}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples: expected >= 1, got {max_samples}")
    prompts = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            if line.strip():
                prompts.append(_parse_line(p, lineno, line))
    if not prompts:
        raise ValueError(f"prompts: {p} holds no prompts")
    if max_samples is not None and len(prompts) > max_samples:
        keep = sorted(random.Random(seed).sample(range(len(prompts)), max_samples))
        prompts = [prompts[i] for i in keep]
    return prompts


def encode_prompt(
    prompt: Prompt, tokenizer: Any | None, *, chat_template: bool = True
) -> list[int]:
    """Token ids of a prompt.

    Pre-tokenised prompts are returned as is. Text goes through the tokenizer's chat template
    when it has one (one user message, no system prompt, ``add_generation_prompt=True``,
    ``enable_thinking=False``: the reference protocol), else through ``tokenizer.encode``.

    Raises
    ------
    ValueError
        A text prompt and no tokenizer, or a prompt that encodes to no tokens.
    """
    if prompt.input_ids is not None:
        return list(prompt.input_ids)
    if tokenizer is None:
        raise ValueError(
            f"tokenizer: prompt {prompt.index} is text and no tokenizer was given (pass a "
            "tokenizer, a ByteTokenizer, or pre-tokenised {'input_ids': [...]} records)"
        )
    ids: Sequence[int]
    if chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.text}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer.encode(prompt.text)
    if len(ids) == 0:
        raise ValueError(f"prompts: prompt {prompt.index} encodes to no tokens")
    return [int(t) for t in ids]
