"""The raw `_C` entry points for the fuzz suite: the same base calls as the public ops (see
``tests/fuzz/specs.py``), with preallocated outputs and positional arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import dspark
from dspark import _C
from tests.fuzz.specs import (
    _ATTN_ARGS,
    _DRAFT_ARGS,
    _VERIFY_ARGS,
    Spec,
    _attn_base,
    _attn_check,
    _check_verify_result,
    _close,
    _draft_base,
    _draft_check,
    _equal,
    _verify_base,
    i32,
    i64,
)

_RAW_VERIFY_ORDER = [
    "target",
    "draft_tokens",
    "draft_indptr",
    "parents",
    "draft_q",
    "q_kind",
    "sampling",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "seed",
    "offset",
    "max_emit",
    "target_is_probs",
    "max_depth",
    "accept_len",
    "num_emitted",
    "tokens",
    "final_token",
    "final_is_bonus",
    "path",
    "last_row",
    "next_offset",
    "logprobs",
]


def _raw_verify_base(g: torch.Generator, size: int) -> dict[str, Any]:
    kw = _verify_base(g, size)
    R, D = 3, 3
    return {
        "target": kw["target"],
        "draft_tokens": kw["draft_tokens"],
        "draft_indptr": kw["draft_indptr"],
        "parents": kw["parents"],
        "draft_q": kw["draft_probs"],
        "q_kind": 1,
        "sampling": 0,
        "temperature": kw["temperature"],
        "top_k": torch.full((R,), 5, dtype=i32),
        "top_p": kw["top_p"],
        "min_p": torch.full((R,), 0.05),
        "seed": kw["seed"],
        "offset": torch.full((R,), 4, dtype=i64),
        "max_emit": kw["max_emit"],
        "target_is_probs": False,
        "max_depth": D,
        "accept_len": torch.empty(R, dtype=i32),
        "num_emitted": torch.empty(R, dtype=i32),
        "tokens": torch.empty(R, D + 1, dtype=i32),
        "final_token": torch.empty(R, dtype=i32),
        "final_is_bonus": torch.empty(R, dtype=torch.bool),
        "path": torch.empty(R, D, dtype=i32),
        "last_row": torch.empty(R, dtype=i32),
        "next_offset": torch.empty(R, dtype=i64),
        "logprobs": torch.empty(R, D + 1),
    }


def _raw_verify_call(kw: dict[str, Any]) -> Any:
    _C.verify_batch(*(kw[k] for k in _RAW_VERIFY_ORDER))
    return dspark.VerifyResult(*(kw[k] for k in _RAW_VERIFY_ORDER[16:]))


def _raw_verify_check(kw: dict[str, Any], res: Any) -> None:
    _check_verify_result(res, kw["target"].shape[1], kw["max_depth"])


_OUT = ("out",)
_RAW_VERIFY_ARGS = {
    **{k: ("out",) for k in _VERIFY_ARGS if k != "draft_probs"},
    "draft_q": ("draft_probs",),
    "q_kind": ("draft_q", "draft_probs", "draft_logits"),
    "sampling": ("draft_sampling",),
    **{k: _OUT for k in _RAW_VERIFY_ORDER[16:]},
}
_RAW_VERIFY_ARGS["draft_indptr"] = (
    *_VERIFY_ARGS["draft_indptr"],
    "out",
    "top_k",
    "min_p",
    "offset",
)
_RAW_VERIFY_ARGS["draft_tokens"] = (*_VERIFY_ARGS["draft_tokens"], "draft_q")
_RAW_VERIFY_ARGS["target"] = ("draft_indptr", "draft_q", "draft_probs")

_RAW_ATTN_ORDER = [
    "q",
    "k_cache",
    "v_cache",
    "qo_indptr",
    "block_table",
    "kv_len",
    "parents",
    "sm_scale",
    "soft_cap",
    "window_left",
    "max_qo_len",
    "max_kv_len",
    "out",
    "lse",
    "cuda_kernel",
]


def _raw_attn_base(g: torch.Generator, size: int) -> dict[str, Any]:
    kw = _attn_base(g, size)
    T, H, D = kw["q"].shape
    return {
        **{k: kw[k] for k in _RAW_ATTN_ORDER[:7]},
        "sm_scale": 0.125,
        "soft_cap": 0.0,
        "window_left": -1,
        "max_qo_len": -1,
        "max_kv_len": -1,
        "out": torch.empty(T, H, D),
        "lse": torch.empty(T, H),
        "cuda_kernel": 0,
    }


def _raw_attn_call(kw: dict[str, Any]) -> Any:
    _C.verify_attention(*(kw[k] for k in _RAW_ATTN_ORDER))
    return kw["out"]


_RAW_ATTN_ARGS = {
    **{k: (*v, "out", "lse") for k, v in _ATTN_ARGS.items() if k != "logits_soft_cap"},
    "soft_cap": ("logits_soft_cap",),
    "max_qo_len": (),
    "max_kv_len": (),
    "out": (),
    "lse": (),
    "cuda_kernel": (),
}

_RAW_DRAFT_ORDER = [
    "base_logits",
    "w1",
    "w2",
    "anchors",
    "temperature",
    "seed",
    "offset",
    "hidden",
    "conf_weight",
    "conf_bias",
    "candidates",
    "tokens",
    "draft_logits",
    "confidence",
    "next_offset",
]


def _raw_draft_base(g: torch.Generator, size: int) -> dict[str, Any]:
    kw = _draft_base(g, size)
    R, G, V = kw["base_logits"].shape
    return {
        **kw,
        "offset": torch.full((R,), 3, dtype=i64),
        "tokens": torch.empty(R, G, dtype=i32),
        "draft_logits": torch.empty(R, G, V),
        "confidence": torch.empty(R, G),
        "next_offset": torch.empty(R, dtype=i64),
    }


def _raw_draft_call(kw: dict[str, Any]) -> Any:
    _C.draft_step(*(kw[k] for k in _RAW_DRAFT_ORDER))
    return dspark.DraftStepResult(
        kw["tokens"], kw["draft_logits"], kw["confidence"], kw["next_offset"]
    )


_RAW_DRAFT_ARGS = {
    **{k: (*v, "out", "w1/w2/anchors/seed/offset") for k, v in _DRAFT_ARGS.items()},
    **{k: ("out", "hidden", "conf_weight") for k in _RAW_DRAFT_ORDER[11:]},
}
_RAW_DRAFT_ARGS["hidden"] = (*_RAW_DRAFT_ARGS["hidden"], "confidence")

_RAW_STRUCT_ORDER = ("draft_tokens", "draft_indptr", "parents", "vocab_size")


def _raw_struct_base(g: torch.Generator, size: int) -> dict[str, Any]:
    kw = _verify_base(g, size)
    return {k: kw.get(k) for k in _RAW_STRUCT_ORDER[:3]} | {"vocab_size": kw["target"].shape[1]}


def _raw_struct_check(kw: dict[str, Any], depth: Any) -> None:
    assert isinstance(depth, int) and 0 <= depth <= kw["draft_tokens"].shape[0]


_RAW_INDICES_ORDER = [
    "qo_indptr",
    "block_table",
    "kv_len",
    "parents",
    "num_tokens",
    "num_pages",
    "page_size",
]


def _raw_indices_base(g: torch.Generator, size: int) -> dict[str, Any]:
    kw = _attn_base(g, size)
    P, S = kw["k_cache"].shape[:2]
    return {k: kw[k] for k in _RAW_INDICES_ORDER[:4]} | {
        "num_tokens": kw["q"].shape[0],
        "num_pages": P,
        "page_size": S,
    }


def _raw_indices_check(kw: dict[str, Any], out: Any) -> None:
    mq, mk = out
    assert 0 <= mq <= mk


def _positional(fn: Callable[..., Any], order: tuple[str, ...] | list[str]) -> Callable[..., Any]:
    return lambda kw: fn(*(kw[k] for k in order))


RAW_SPECS: dict[str, Spec] = {
    "_C.verify_batch": Spec(
        _raw_verify_base, _raw_verify_call, _raw_verify_check, _RAW_VERIFY_ARGS, _equal, raw=True
    ),
    "_C.verify_attention": Spec(
        _raw_attn_base, _raw_attn_call, _attn_check, _RAW_ATTN_ARGS, _close, raw=True
    ),
    "_C.draft_step": Spec(
        _raw_draft_base, _raw_draft_call, _draft_check, _RAW_DRAFT_ARGS, _equal, raw=True
    ),
    "_C.check_verify_structure": Spec(
        _raw_struct_base,
        _positional(_C.check_verify_structure, _RAW_STRUCT_ORDER),
        _raw_struct_check,
        {k: () for k in _RAW_STRUCT_ORDER}
        | {
            "draft_indptr": ("draft_tokens",),
            "draft_tokens": ("parents", "draft_indptr"),
            "vocab_size": ("draft_tokens",),
        },
        _equal,
        raw=True,
    ),
    "_C.check_verify_attention_indices": Spec(
        _raw_indices_base,
        _positional(_C.check_verify_attention_indices, _RAW_INDICES_ORDER),
        _raw_indices_check,
        {k: () for k in _RAW_INDICES_ORDER}
        | {
            "qo_indptr": ("block_table", "kv_len", "parents"),
            "num_tokens": ("qo_indptr", "parents"),
            "num_pages": ("block_table",),
        },
        _equal,
        raw=True,
    ),
}
