"""Validation of generation inputs: every message names the argument, expected vs got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dspark._checks import as_request_tensor

__all__ = ["RequestParams", "check_generate_inputs", "default_token_ids"]


@dataclass
class RequestParams:
    """Checked, per-request generation parameters (B requests, on the target's device)."""

    input_ids: torch.Tensor  # [B, L] int64
    attention_mask: torch.Tensor  # [B, L] bool
    max_new_tokens: torch.Tensor  # [B] int64
    temperature: torch.Tensor  # [B] float32
    top_k: torch.Tensor  # [B] int32
    top_p: torch.Tensor  # [B] float32
    stop_sets: list[frozenset[int]]
    pad_token_id: int

    @property
    def batch(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def device(self) -> torch.device:
        return self.input_ids.device


def default_token_ids(target: Any, field: str) -> list[int]:
    """A token-id ``field`` of ``target`` (``"eos_token_id"``, ...) as a list, [] if unset.

    The generation config wins over the model config.
    """
    gc = getattr(target, "generation_config", None)
    v = getattr(gc, field, None) if gc is not None else None
    if v is None:
        v = getattr(target.config, field, None)
    if v is None:
        return []
    return [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def _from_sampling(sampling: Any, input_ids: Any, **keywords: Any) -> dict[str, Any]:
    """The generate keywords a :class:`dspark.SamplingParams` (one, or one per request) sets."""
    from dspark.sampling_params import SamplingParams

    defaults = {
        "max_new_tokens": None,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "stop_token_ids": None,
    }
    given = [k for k, v in keywords.items() if not _is_default(v, defaults[k])]
    if given:
        raise ValueError(f"sampling: pass either sampling= or {', '.join(given)}, not both")
    bsz = int(input_ids.shape[0]) if isinstance(input_ids, torch.Tensor) and input_ids.dim() else 1
    b = SamplingParams.batch(sampling, num_requests=None if isinstance(sampling, list) else bsz)
    if b.max_tokens is None:
        raise ValueError("sampling: max_tokens must be set for generate")
    if bool((b.min_p != 0).any()):
        raise ValueError("sampling: min_p is not supported by generate yet (use dspark.engine)")
    if b.seed is not None:
        raise ValueError("sampling: per-request seeds are not supported by generate; use seed=")
    stops = [sorted(s) for s in b.stop]
    return {
        "max_new_tokens": b.max_tokens,
        "temperature": b.temperature,
        "top_k": b.top_k,
        "top_p": b.top_p,
        # An empty stop set keeps generate's default (the target's end-of-sequence ids).
        "stop_token_ids": stops if any(stops) else None,
    }


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (not isinstance(value, torch.Tensor) and value == default)


def check_generate_inputs(
    target: Any,
    input_ids: Any,
    attention_mask: Any = None,
    *,
    max_new_tokens: Any = None,
    temperature: Any = 1.0,
    top_k: Any = 0,
    top_p: Any = 1.0,
    stop_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
    pad_token_id: int | None = None,
    sampling: Any = None,
) -> RequestParams:
    """Check and normalise :func:`dspark.generate` arguments (see its docstring)."""
    if sampling is not None:
        return check_generate_inputs(
            target,
            input_ids,
            attention_mask,
            pad_token_id=pad_token_id,
            **_from_sampling(
                sampling,
                input_ids,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                stop_token_ids=stop_token_ids,
            ),
        )
    if max_new_tokens is None:
        raise TypeError(
            "max_new_tokens: required (or pass sampling=SamplingParams(max_tokens=...))"
        )
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids: expected a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids: expected an integer tensor, got {input_ids.dtype}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids: expected shape (B, L), got {tuple(input_ids.shape)}")
    bsz, length = input_ids.shape
    if bsz == 0 or length == 0:
        raise ValueError(
            f"input_ids: empty prompt batch, expected B >= 1 and L >= 1, got {(bsz, length)}"
        )
    device = next(target.parameters()).device
    vocab = int(target.get_output_embeddings().weight.shape[0])
    ids = input_ids.to(device=device, dtype=torch.int64)
    if attention_mask is None:
        mask = torch.ones_like(ids, dtype=torch.bool)
    else:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            got = (
                tuple(attention_mask.shape)
                if isinstance(attention_mask, torch.Tensor)
                else type(attention_mask).__name__
            )
            raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, got {got}")
        mask = attention_mask.to(device) != 0
    empty = (~mask.any(1)).nonzero()
    if empty.numel():
        raise ValueError(
            f"input_ids: prompt {int(empty[0, 0])} is empty (no real token in attention_mask)"
        )
    real = ids[mask]
    if bool(((real < 0) | (real >= vocab)).any()):
        bad = int(real[(real < 0) | (real >= vocab)][0])
        raise ValueError(f"input_ids: expected token ids in [0, {vocab}), got {bad}")
    mnt = as_request_tensor(
        "max_new_tokens", max_new_tokens, bsz, torch.int64, device, convert=True
    )
    assert mnt is not None  # as_request_tensor returns None only for None
    if bool((mnt < 1).any()):
        raise ValueError(f"max_new_tokens: expected values >= 1, got {mnt.min().item()}")
    temp = as_request_tensor("temperature", temperature, bsz, torch.float32, device, convert=True)
    assert temp is not None
    if bool(((temp < 0) | ~torch.isfinite(temp)).any()):
        raise ValueError(f"temperature: expected finite values >= 0, got {temp.tolist()}")
    tk = as_request_tensor("top_k", top_k, bsz, torch.int32, device, convert=True)
    assert tk is not None
    if bool((tk < 0).any()):
        raise ValueError(f"top_k: expected values >= 0, got {tk.tolist()}")
    tp = as_request_tensor("top_p", top_p, bsz, torch.float32, device, convert=True)
    assert tp is not None
    if bool(((tp <= 0) | (tp > 1)).any()):
        raise ValueError(f"top_p: expected values in (0, 1], got {tp.tolist()}")
    if stop_token_ids is None:
        stops = [frozenset(default_token_ids(target, "eos_token_id"))] * bsz
    elif all(isinstance(s, int) for s in stop_token_ids):
        stops = [frozenset(int(s) for s in stop_token_ids)] * bsz
    else:
        if len(stop_token_ids) != bsz:
            raise ValueError(
                f"stop_token_ids: expected one list per request ({bsz}), got "
                f"{len(stop_token_ids)} (mismatched batch)"
            )
        stops = [frozenset(int(x) for x in s) for s in stop_token_ids]
    if pad_token_id is None:
        pads = (
            default_token_ids(target, "pad_token_id")
            or default_token_ids(target, "eos_token_id")
            or [0]
        )
        pad_token_id = pads[0]
    return RequestParams(ids, mask, mnt, temp, tk, tp, stops, int(pad_token_id))
