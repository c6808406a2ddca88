"""Named, table-driven argument checks (mirrored in C++ by csrc/ops/checks.h).

Every message names the argument, what was expected and what was given, e.g.
``draft_probs: expected dtype float32|bfloat16|float16, got int64``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "as_float",
    "as_int",
    "as_int_tensor",
    "as_request_tensor",
    "check_tensor",
    "cuda_stream",
    "fmt_shape",
]

_INT_RANGE = {
    torch.int32: (-(2**31), 2**31 - 1),
    torch.int64: (-(2**63), 2**63 - 1),
}


def fmt_shape(shape: Sequence[int | None]) -> str:
    """Format a shape like ``(4, *, 7)`` (None = any size)."""
    parts = ["*" if s is None else str(int(s)) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_tensor(
    name: str,
    t: object,
    *,
    dtypes: Sequence[torch.dtype] | None = None,
    shape: Sequence[int | None] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Check that ``t`` is a tensor with an allowed dtype, shape and device; return it.

    Raises
    ------
    TypeError
        ``t`` is not a tensor or has a dtype outside ``dtypes``.
    ValueError
        Wrong rank, size or device.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = "|".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(
            f"{name}: expected dtype {allowed}, got {str(t.dtype).removeprefix('torch.')}"
        )
    if shape is not None:
        ok = t.dim() == len(shape) and all(
            s is None or s == n for s, n in zip(shape, t.shape, strict=False)
        )
        if not ok:
            raise ValueError(
                f"{name}: expected shape {fmt_shape(shape)}, got {fmt_shape(tuple(t.shape))}"
            )
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got one on {t.device}")
    return t


def as_request_tensor(
    name: str,
    value: object,
    num_requests: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    convert: bool = False,
) -> torch.Tensor | None:
    """Turn a per-request argument (None, a Python scalar, or a [R] tensor) into a [R] tensor.

    ``convert=True`` also accepts lists/tuples and tensors on another device (moved).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(
            f"{name}: expected a number or a tensor of shape ({num_requests},), got bool"
        )
    if isinstance(value, (int, float)):
        if not dtype.is_floating_point:
            value = as_int(name, value, *_INT_RANGE[dtype])
        else:
            value = _as_float_in(name, value, dtype)
        return torch.full((num_requests,), value, dtype=dtype, device=device)
    if convert and isinstance(value, (list, tuple)):
        value = torch.as_tensor(value)
    t = check_tensor(name, value, device=None if convert else device)
    if t.shape != (num_requests,):
        raise ValueError(
            f"{name}: expected shape ({num_requests},), got {fmt_shape(tuple(t.shape))} (a "
            "scalar or one value per request: mismatched batch)"
        )
    if t.dtype.is_floating_point != dtype.is_floating_point or t.dtype == torch.bool:
        kind = "floating" if dtype.is_floating_point else "integer"
        raise TypeError(
            f"{name}: expected a {kind} tensor, got {str(t.dtype).removeprefix('torch.')}"
        )
    t = t.to(device)
    if not dtype.is_floating_point:
        return as_int_tensor(name, t, dtype)
    if t.dtype != dtype:
        t = t.to(dtype)
    return t if t.is_contiguous() else t.contiguous()


def as_float(name: str, value: object) -> float:
    """Convert a Python scalar meant as a float (finiteness is the native op's check)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    return float(value)


def _as_float_in(name: str, value: float, dtype: torch.dtype) -> float:
    """``float(value)``, with a named error when it overflows ``dtype`` (NaN/inf pass through)."""
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if math.isfinite(v) and abs(v) > torch.finfo(dtype).max:
        raise ValueError(f"{name}: expected a value that fits in {dtype}, got {value!r}")
    return v


def as_int(name: str, value: object, lo: int, hi: int) -> int:
    """Convert a Python scalar meant as an int, refusing bools, fractions and values off [lo, hi].

    Integral floats (``2.0``) are accepted; ``2.5`` raises instead of truncating.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if isinstance(value, float) and not value.is_integer():
        raise TypeError(f"{name}: expected an int, got the non-integral float {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise ValueError(f"{name}: expected an int in [{lo}, {hi}], got {v}")
    return v


def as_int_tensor(name: str, t: torch.Tensor, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """Convert an integer tensor to a contiguous ``dtype`` tensor, raising instead of wrapping.

    A narrowing conversion checks the values first (one reduction; a host sync on CUDA).
    """
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(
            f"{name}: expected an integer tensor, got {str(t.dtype).removeprefix('torch.')}"
        )
    if t.dtype != dtype:
        lo, hi = _INT_RANGE[dtype]
        if t.numel() and t.dtype.itemsize > dtype.itemsize:
            bad = (t < lo) | (t > hi)
            if bool(bad.any()):
                i = tuple(int(x) for x in torch.nonzero(bad)[0])
                raise ValueError(
                    f"{name}: expected values that fit in {str(dtype).removeprefix('torch.')} "
                    f"[{lo}, {hi}], got {name}[{', '.join(map(str, i))}] = {int(t[i])}"
                )
        t = t.to(dtype)
    return t if t.is_contiguous() else t.contiguous()


def cuda_stream(t: torch.Tensor) -> int:
    """The current CUDA stream of ``t``'s device as an int (0 for CPU tensors)."""
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0
