"""Decoding methods timed next to dspark: target-only decoding and Hugging Face peers.

Every runner takes a left-padded batch and returns the number of new tokens per request (cut at
the first stop token) so tokens/s are counted the same way for every method. Sampling uses the
plain target distribution (``top_k=0``, ``top_p=1``), like dspark's evaluation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = ["PEERS", "count_new_tokens", "hf_generate", "hf_generate_tokens"]

# peer name -> extra ``generate`` keyword arguments builder (batch size 1 in transformers)
PEERS = ("assisted", "prompt_lookup")


def count_new_tokens(new: torch.Tensor, stop_ids: Sequence[int], limit: int) -> list[int]:
    """Tokens per row of ``new`` (B, M) up to and including the first stop token (<= limit)."""
    out = []
    stops = set(int(s) for s in stop_ids)
    for row in new.tolist():
        n = min(len(row), limit)
        for i, t in enumerate(row[:n]):
            if t in stops:
                n = i + 1
                break
        out.append(n)
    return out


def hf_generate_tokens(
    target: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    stop_ids: Sequence[int],
    pad_token_id: int,
    **extra: Any,
) -> list[list[int]]:
    """``target.generate`` (target-only, or a peer through ``extra``); each request's new token
    ids, cut after its first stop token.

    Parameters
    ----------
    input_ids, attention_mask : Tensor (B, L)
        Left-padded prompts.
    extra
        ``assistant_model=`` (assisted generation) or ``prompt_lookup_num_tokens=``.
    """
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
        if temperature > 0
        else {"do_sample": False}
    )
    peer = {k: v for k, v in extra.items() if k != "assistant_model"}
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_ids) or None,
        pad_token_id=pad_token_id,
        **sampling,
        **peer,
    )
    models = {"assistant_model": extra["assistant_model"]} if "assistant_model" in extra else {}
    dev = next(target.parameters()).device
    with torch.no_grad(), _quiet_assistant_config_notice():
        out = target.generate(
            input_ids=input_ids.to(dev),
            attention_mask=attention_mask.to(dev),
            generation_config=config,
            **models,
        )
    new = out[:, input_ids.shape[1] :].cpu()
    counts = count_new_tokens(new, stop_ids, max_new_tokens)
    return [row[:n] for row, n in zip(new.tolist(), counts, strict=True)]


def hf_generate(*args: Any, **kwargs: Any) -> list[int]:
    """:func:`hf_generate_tokens`, returning the number of new tokens per request."""
    return [len(t) for t in hf_generate_tokens(*args, **kwargs)]


class _DropAssistantNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Passing `generation_config` together with" not in record.getMessage()


@contextlib.contextmanager
def _quiet_assistant_config_notice() -> Iterator[None]:
    """Hide one notice transformers raises against itself during assisted generation.

    dspark passes every setting in one ``GenerationConfig``; transformers' own
    ``AssistedCandidateGenerator`` then calls ``assistant_model.generate(generation_config=...,
    max_new_tokens=..., ...)`` and its ``generate`` logs that this mix "is deprecated". Nothing a
    caller can change causes it, so only that message is filtered, only during the call.
    """
    log = logging.getLogger("transformers.generation.utils")
    notice = _DropAssistantNotice()
    log.addFilter(notice)
    try:
        yield
    finally:
        log.removeFilter(notice)
