"""One-argument mutations for the fuzz suite.

A mutation takes a valid argument value and returns a mutated one, or ``SKIP`` when it does not
apply (e.g. a float mutation of an int tensor). ``PRESERVING`` mutations keep the values (only the
layout or the integer width changes): a call that succeeds after one must return the baseline's
result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SKIP = object()


def _t(x: object) -> torch.Tensor | None:
    return x if isinstance(x, torch.Tensor) else None


def _set_first(x: object, value: float) -> object:
    t = _t(x)
    if t is None or t.numel() == 0 or t.dtype == torch.bool:
        return SKIP
    if not t.dtype.is_floating_point and not math.isfinite(value):
        return SKIP
    t = t.clone()
    if not t.dtype.is_floating_point and not (
        torch.iinfo(t.dtype).min <= value <= torch.iinfo(t.dtype).max
    ):
        t = t.to(torch.int64)
    t.view(-1)[0] = value
    return t


def _noncontig(x: object) -> object:
    t = _t(x)
    if t is None or t.numel() < 2:
        return SKIP
    # The same values in a strided view (every second element of a doubled buffer).
    buf = torch.empty((*t.shape[:-1], t.shape[-1] * 2), dtype=t.dtype) if t.dim() else None
    if buf is None:
        return SKIP
    buf[..., ::2] = t
    return buf[..., ::2]


def _transposed_copy(x: object) -> object:
    t = _t(x)
    if t is None or t.dim() < 2 or t.numel() < 2:
        return SKIP
    return t.transpose(0, 1).contiguous().transpose(0, 1)


def _dtype(d: torch.dtype) -> Callable[[object], object]:
    def f(x: object) -> object:
        t = _t(x)
        return SKIP if t is None or t.dtype == d else t.to(d)

    return f


def _int_widen(x: object) -> object:
    t = _t(x)
    return t.to(torch.int64) if t is not None and t.dtype == torch.int32 else SKIP


def _wrap_int32(x: object) -> object:
    t = _t(x)
    if t is None or t.dtype.is_floating_point or t.dtype == torch.bool or t.numel() == 0:
        return SKIP
    t = t.to(torch.int64).clone()
    t.view(-1)[-1] += 2**32  # reads as the valid value if narrowed without a check
    return t


def _frac(x: object) -> object:
    t = _t(x)
    if t is None or t.dtype.is_floating_point or t.dtype == torch.bool:
        return SKIP
    return t.double() + 0.5


def _shape(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[object], object]:
    def f(x: object) -> object:
        t = _t(x)
        return SKIP if t is None or t.dim() == 0 else fn(t)

    return f


def _scalar(value: object, kinds: tuple[type, ...] = (int, float)) -> Callable[[object], object]:
    def f(x: object) -> object:
        return value if isinstance(x, kinds) and not isinstance(x, bool) else SKIP

    return f


TENSOR: dict[str, Callable[[object], object]] = {
    "float32": _dtype(torch.float32),
    "float64": _dtype(torch.float64),
    "int64": _int_widen,
    "int32": _dtype(torch.int32),
    "bool": _dtype(torch.bool),
    "uint8": _dtype(torch.uint8),
    "int16": _dtype(torch.int16),
    "fractional": _frac,
    "wrap_int32": _wrap_int32,
    "longer": _shape(lambda t: torch.cat([t, t[-1:]]) if t.shape[0] else t.new_zeros(1)),
    "shorter": _shape(lambda t: t[:-1]),
    "extra_dim": _shape(lambda t: t[None]),
    "drop_dim": _shape(lambda t: t.reshape(-1)[: t.shape[-1]] if t.dim() > 1 else t.reshape(-1)[0]),
    "wider": _shape(lambda t: torch.cat([t, t[..., -1:]], dim=-1) if t.shape[-1] else t),
    "zero_size": _shape(lambda t: t[:0]),
    "noncontig": _noncontig,
    "transposed_copy": _transposed_copy,
    "negative": lambda x: _set_first(x, -1),
    "very_negative": lambda x: _set_first(x, -(2**31)),
    "huge": lambda x: _set_first(x, 2**31 - 1),
    "nan": lambda x: _set_first(x, math.nan),
    "inf": lambda x: _set_first(x, math.inf),
    "-inf": lambda x: _set_first(x, -math.inf),
    "list": lambda x: x.tolist() if isinstance(x, torch.Tensor) else SKIP,
    "none": lambda x: None if x is not None else SKIP,
}

SCALAR: dict[str, Callable[[object], object]] = {
    "s_negative": _scalar(-1),
    "s_zero": _scalar(0),
    "s_huge": _scalar(2**40),
    "s_int64_overflow": _scalar(2**64),
    "s_fraction": _scalar(2.5),
    "s_nan": _scalar(math.nan),
    "s_inf": _scalar(math.inf),
    "s_-inf": _scalar(-math.inf),
    "s_bool": _scalar(True),
    "s_str": _scalar("1"),
    "s_none": _scalar(None),
}


def _list(fn: Callable[[list], object]) -> Callable[[object], object]:
    return lambda x: fn(x) if isinstance(x, list) else SKIP


LIST: dict[str, Callable[[object], object]] = {
    "l_fraction": _list(lambda x: [*x, [0.7]]),
    "l_negative": _list(lambda x: [*x, [-1]]),
    "l_huge": _list(lambda x: [*x, [2**40]]),
    "l_empty_path": _list(lambda x: [*x, []]),
    "l_flat": _list(lambda x: [0, *x]),
    "l_str": _list(lambda x: [*x, ["a"]]),
    "l_orphan": _list(lambda x: [*x, [5, 5]]),
    "l_empty": _list(lambda x: []),
}

ALL = {**TENSOR, **SCALAR, **LIST}

PRESERVING = {"int64", "noncontig", "transposed_copy"}
