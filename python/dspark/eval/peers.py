"""Decoding methods timed next to dspark: target-only decoding and Hugging Face peers.

Every runner takes a left-padded batch and returns the number of new tokens per request (cut at
the first stop token) so tokens/s are counted the same way for every method. Sampling uses the
plain target distribution (``top_k=0``, ``top_p=1``), like dspark's evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["PEERS", "count_new_tokens", "hf_generate"]

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


def hf_generate(
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
) -> list[int]:
    """``target.generate`` (target-only, or a peer through ``extra``); new tokens per request.

    Parameters
    ----------
    input_ids, attention_mask : Tensor (B, L)
        Left-padded prompts.
    extra
        ``assistant_model=`` (assisted generation) or ``prompt_lookup_num_tokens=``.
    """
    torch.manual_seed(seed)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
        if temperature > 0
        else {"do_sample": False}
    )
    dev = next(target.parameters()).device
    with torch.no_grad():
        out = target.generate(
            input_ids=input_ids.to(dev),
            attention_mask=attention_mask.to(dev),
            max_new_tokens=max_new_tokens,
            min_new_tokens=0,
            eos_token_id=list(stop_ids) or None,
            pad_token_id=pad_token_id,
            **sampling,
            **extra,
        )
    return count_new_tokens(out[:, input_ids.shape[1] :].cpu(), stop_ids, max_new_tokens)
