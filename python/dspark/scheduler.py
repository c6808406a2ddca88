"""Confidence-scheduled verification: step-rate profiles and the prefix scheduler.

The maths is ``algorithms.md`` section 4 (Algorithm 1, its early stop, and the asynchronous
top-K variant). The walk runs in C++ (``csrc/scheduler``); this module holds the typed API, JSON
persistence and the profiling helper.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from dspark import _C

__all__ = [
    "AsyncPrefixScheduler",
    "LoadMonitor",
    "PrefixScheduler",
    "ScheduleResult",
    "SpsTable",
    "profile_sps",
]

_MODES = {"linear": 0, "step": 1}
_FORMAT = "dspark.sps_table"


def _floats(name: str, values: object) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a sequence of numbers ({e})") from None


class SpsTable:
    """Step-rate curve SPS(B): target forward steps per second for a step of B tokens.

    Parameters
    ----------
    tokens : sequence of numbers (n,)
        Token counts per target step at which the engine was profiled; strictly increasing, >= 1.
    steps_per_second : sequence of numbers (n,)
        Measured steps per second at those counts; positive and finite.
    interpolation : {"linear", "step"}
        Between grid points, "linear" interpolates the step time T = 1/SPS (a step's cost is
        additive in tokens); "step" charges the next grid point's time, as an engine that pads a
        batch up to the next captured CUDA-graph size does, so a staircase is kept exact. Below the
        grid the first time is used; above it the last segment's slope extends the curve.

    Raises
    ------
    ValueError
        Empty, unsorted, non-positive or non-finite profiles; mismatched lengths.

    Examples
    --------
    >>> import dspark
    >>> sps = dspark.SpsTable([1, 64, 256], [100.0, 95.0, 50.0])
    >>> round(sps(32), 3), round(sps.step_time(256), 4)
    (97.476, 0.02)
    """

    def __init__(
        self,
        tokens: Sequence[float],
        steps_per_second: Sequence[float],
        interpolation: Literal["linear", "step"] = "linear",
    ) -> None:
        if interpolation not in _MODES:
            raise ValueError(f"interpolation: expected 'linear' or 'step', got {interpolation!r}")
        self._impl = _C.SpsTable(
            _floats("tokens", tokens), _floats("steps_per_second", steps_per_second),
            _MODES[interpolation],
        )

    @classmethod
    def from_step_times(
        cls,
        tokens: Sequence[float],
        step_seconds: Sequence[float],
        interpolation: Literal["linear", "step"] = "linear",
    ) -> SpsTable:
        """Build a table from step times in seconds, ``T(B)`` instead of ``SPS(B) = 1 / T(B)``."""
        if interpolation not in _MODES:
            raise ValueError(f"interpolation: expected 'linear' or 'step', got {interpolation!r}")
        impl = _C.SpsTable.from_step_times(
            _floats("tokens", tokens), _floats("step_seconds", step_seconds), _MODES[interpolation]
        )
        return cls._wrap(impl)

    @classmethod
    def _wrap(cls, impl: Any) -> SpsTable:
        obj = cls.__new__(cls)
        obj._impl = impl
        return obj

    def __call__(self, tokens: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """Steps per second for a step of ``tokens`` tokens (scalar or array)."""
        if np.ndim(tokens) == 0:
            return float(self._impl.sps(float(tokens)))  # type: ignore[arg-type]
        arr = np.asarray(tokens, dtype=np.float64)
        return np.asarray(self._impl.sps_many(arr.ravel().tolist())).reshape(arr.shape)

    def step_time(self, tokens: float) -> float:
        """Step time in seconds for a step of ``tokens`` tokens."""
        return float(self._impl.step_time(float(tokens)))

    @property
    def tokens(self) -> list[float]:
        """Grid token counts (n,)."""
        return list(self._impl.tokens)

    @property
    def steps_per_second(self) -> list[float]:
        """Steps per second at the grid points (n,)."""
        return list(self._impl.steps_per_second)

    @property
    def step_times(self) -> list[float]:
        """Step times in seconds at the grid points (n,)."""
        return list(self._impl.step_times)

    @property
    def interpolation(self) -> str:
        """"linear" or "step"."""
        return "step" if self._impl.interpolation == 1 else "linear"

    def scaled(self, factor: float) -> SpsTable:
        """A copy whose step times are multiplied by ``factor`` (e.g. a slower replica)."""
        if not (factor > 0 and np.isfinite(factor)):
            raise ValueError(f"factor: expected a positive finite number, got {factor}")
        times = [t * factor for t in self.step_times]
        return SpsTable.from_step_times(self.tokens, times, self.interpolation)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (format tag, version, grid, rates, interpolation)."""
        return {
            "format": _FORMAT,
            "version": 1,
            "interpolation": self.interpolation,
            "tokens": self.tokens,
            "steps_per_second": self.steps_per_second,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpsTable:
        """Inverse of :meth:`to_dict`; validates the format tag and every value."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"sps table: expected a dict with format {_FORMAT!r}")
        if d.get("version") != 1:
            raise ValueError(f"sps table: expected version 1, got {d.get('version')!r}")
        for key in ("tokens", "steps_per_second"):
            if key not in d:
                raise ValueError(f"sps table: missing key {key!r}")
        return cls(d["tokens"], d["steps_per_second"], d.get("interpolation", "linear"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write JSON atomically (temporary file in the same directory, then rename)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SpsTable:
        """Read a table written by :meth:`save` (validated)."""
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"path: {path} is not valid JSON ({e})") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        return (
            f"SpsTable(n={len(self.tokens)}, tokens={self.tokens[0]:g}..{self.tokens[-1]:g}, "
            f"interpolation={self.interpolation!r})"
        )


class LoadMonitor:
    """Refines an :class:`SpsTable` online from observed engine steps (thread-safe, O(log n)).

    Each observation ``(tokens, seconds)`` is compared with the curve's prediction; the residual is
    clipped at ``clip`` times a running robust scale (so a stalled step barely moves the curve) and
    spread over the two neighbouring grid points with learning rate ``alpha``. The published curve
    is made non-decreasing in step time (``monotone``). Pass the monitor to
    :class:`PrefixScheduler` to schedule on the refined curve.

    Parameters
    ----------
    initial : SpsTable
        Start curve and grid (the profile taken at engine start).
    alpha : float
        Learning rate in (0, 1].
    clip : float
        Residual clip, in units of the running scale.
    init_scale : float
        Initial scale as a fraction of each grid point's step time.
    monotone : bool
        Publish non-decreasing step times.

    Examples
    --------
    >>> import dspark
    >>> mon = dspark.LoadMonitor(dspark.SpsTable([1, 128], [100.0, 50.0]))
    >>> for _ in range(200):
    ...     mon.observe(128, 0.025)              # the engine is slower than profiled
    >>> round(mon.table().step_time(128), 4)
    0.025
    """

    def __init__(
        self,
        initial: SpsTable,
        *,
        alpha: float = 0.05,
        clip: float = 3.0,
        init_scale: float = 0.1,
        monotone: bool = True,
    ) -> None:
        if not isinstance(initial, SpsTable):
            raise TypeError(f"initial: expected an SpsTable, got {type(initial).__name__}")
        self._impl = _C.LoadMonitor(initial._impl, alpha, clip, init_scale, monotone)

    def observe(self, tokens: float, step_seconds: float) -> None:
        """Record one step of ``tokens`` tokens that took ``step_seconds`` seconds."""
        self._impl.observe(float(tokens), float(step_seconds))

    def table(self) -> SpsTable:
        """Snapshot of the current curve."""
        return SpsTable._wrap(self._impl.table())

    @property
    def num_observations(self) -> int:
        """Observations recorded (including out-of-range ones)."""
        return int(self._impl.num_observations)

    @property
    def num_clipped(self) -> int:
        """Observations whose residual was clipped (outliers)."""
        return int(self._impl.num_clipped)

    @property
    def num_out_of_range(self) -> int:
        """Observations beyond the last grid point (ignored)."""
        return int(self._impl.num_out_of_range)


class ScheduleResult(NamedTuple):
    """Lengths chosen for one step, with the walk's summary."""

    lengths: torch.Tensor  # [R] int32
    tokens: int  # B = R + sum(lengths)
    expected_tokens: float  # tau = R + sum of admitted survivals
    objective: float  # tau * SPS(B), expected tokens per second


def _as_confidences(confidences: object) -> torch.Tensor:
    if isinstance(confidences, np.ndarray):
        confidences = torch.from_numpy(confidences)
    if not isinstance(confidences, torch.Tensor):
        raise TypeError(f"confidences: expected a torch.Tensor, got {type(confidences).__name__}")
    if not confidences.dtype.is_floating_point:
        raise TypeError(
            f"confidences: expected a floating tensor, got {str(confidences.dtype).removeprefix('torch.')}"
        )
    if confidences.dim() != 2:
        raise ValueError(f"confidences: expected shape (R, G), got {tuple(confidences.shape)}")
    if confidences.shape[0] < 1:
        raise ValueError(
            f"confidences: empty batch: expected shape (R, G) with R >= 1, got {tuple(confidences.shape)}"
        )
    # The walk is host code: a CUDA tensor is copied (one small D2H per step).
    c = confidences.detach().to("cpu", torch.float32)
    return c if c.stride(-1) == 1 else c.contiguous()


def _as_caps(max_lengths: object, num_requests: int) -> torch.Tensor | None:
    if max_lengths is None:
        return None
    if isinstance(max_lengths, int) and not isinstance(max_lengths, bool):
        return torch.full((num_requests,), max_lengths, dtype=torch.int32)
    if not isinstance(max_lengths, torch.Tensor) or max_lengths.dtype not in (torch.int32, torch.int64):
        raise TypeError("max_lengths: expected an int or an int32/int64 tensor of shape (R,)")
    if max_lengths.shape != (num_requests,):
        raise ValueError(
            f"max_lengths: expected shape ({num_requests},), got {tuple(max_lengths.shape)}"
        )
    return max_lengths.detach().to("cpu", torch.int32).contiguous()


def _budget(token_budget: int | None) -> int:
    if token_budget is None:
        return -1
    if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
        raise ValueError(f"token_budget: expected a positive int or None, got {token_budget!r}")
    return token_budget


class PrefixScheduler:
    """Per-request verification lengths that maximise expected tokens per second (Algorithm 1).

    Parameters
    ----------
    sps : SpsTable or LoadMonitor
        The engine's step-rate curve; a monitor is read once per call.
    early_stop : bool
        Stop the walk at the first admission that does not raise the objective. Required for
        lossless verification (``algorithms.md`` section 4); ``False`` searches the whole order for
        the best prefix and exists only to demonstrate the bias.

    Examples
    --------
    >>> import torch, dspark
    >>> sps = dspark.SpsTable([1, 16, 64], [100.0, 98.0, 60.0])
    >>> sched = dspark.PrefixScheduler(sps)
    >>> sched.schedule(torch.tensor([[0.9, 0.9, 0.2], [0.3, 0.9, 0.9]])).tolist()
    [3, 3]
    >>> heavy = dspark.PrefixScheduler(dspark.SpsTable([1, 2, 8], [100.0, 70.0, 20.0]))
    >>> heavy.schedule(torch.tensor([[0.9, 0.9, 0.2], [0.3, 0.9, 0.9]])).tolist()
    [1, 0]
    """

    def __init__(self, sps: SpsTable | LoadMonitor, early_stop: bool = True) -> None:
        if not isinstance(sps, (SpsTable, LoadMonitor)):
            raise TypeError(f"sps: expected an SpsTable or LoadMonitor, got {type(sps).__name__}")
        self.sps = sps
        self._impl = _C.PrefixScheduler(sps._impl, bool(early_stop))

    @property
    def early_stop(self) -> bool:
        """Whether the lossless early stop is on."""
        return bool(self._impl.early_stop)

    def schedule(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> torch.Tensor:
        """Choose how many draft tokens each request verifies this step.

        Parameters
        ----------
        confidences : Tensor (R, G) float
            Per-position conditional confidences ``c[r, j]`` in [0, 1] (calibrated), the
            probability that draft j survives given that drafts < j survived.
        max_lengths : Tensor (R,) int32/int64 or int, optional
            Per-request caps (e.g. the drafts actually available, or remaining tokens - 1).
        token_budget : int, optional
            Cap on the tokens of the verification step, ``R + sum(lengths)``.

        Returns
        -------
        Tensor (R,) int32
            Prefix lengths in 0..G.

        Raises
        ------
        ValueError
            NaN or out-of-range confidences, an empty batch, bad caps.
        TypeError
            Non-tensor or non-floating confidences.
        """
        return self.schedule_with_summary(
            confidences, max_lengths=max_lengths, token_budget=token_budget
        ).lengths

    def schedule_with_summary(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> ScheduleResult:
        """Like :meth:`schedule`, also returning B, tau and tau * SPS(B)."""
        c = _as_confidences(confidences)
        out = torch.empty(c.shape[0], dtype=torch.int32)
        caps = _as_caps(max_lengths, c.shape[0])
        b, tau, obj = self._impl.schedule(c, caps, _budget(token_budget), out)
        return ScheduleResult(out, int(b), float(tau), float(obj))

    def capacity(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> int:
        """Asynchronous stage 1: best draft-token count K from (stale) confidences (global search).

        Returns
        -------
        int
            K >= 0, the number of draft tokens to verify in a later step.
        """
        c = _as_confidences(confidences)
        caps = _as_caps(max_lengths, c.shape[0])
        return int(self._impl.capacity(c, caps, _budget(token_budget)))

    def admit_top_k(
        self,
        confidences: torch.Tensor,
        capacity: int,
        *,
        max_lengths: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> torch.Tensor:
        """Asynchronous stage 2: admit the global top-``capacity`` candidates by current survival.

        Returns
        -------
        Tensor (R,) int32
            Prefix lengths; ``sum <= capacity``.
        """
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity: expected an int >= 0, got {capacity!r}")
        c = _as_confidences(confidences)
        out = torch.empty(c.shape[0], dtype=torch.int32)
        caps = _as_caps(max_lengths, c.shape[0])
        self._impl.admit_top_k(c, capacity, caps, _budget(token_budget), out)
        return out


class AsyncPrefixScheduler:
    """The production (asynchronous) variant: capacity from confidences ``delay`` steps back.

    Step ``t`` admits the global top-K candidates by current survival, where K was computed from
    the confidences of step ``t - delay`` (the causal barrier: K cannot depend on the tokens being
    verified now, so no early stop is needed and step-shaped curves are handled). Until ``delay``
    steps have been seen, K comes from the early-stopping walk on the current confidences.

    Parameters
    ----------
    sps : SpsTable or LoadMonitor
        The engine's step-rate curve.
    delay : int
        Steps between the confidences that set K and the step that uses it (>= 1; 2 in the paper).
    """

    def __init__(self, sps: SpsTable | LoadMonitor, delay: int = 2) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"delay: expected an int >= 1, got {delay!r}")
        self._planner = PrefixScheduler(sps, early_stop=False)
        self._fallback = PrefixScheduler(sps, early_stop=True)
        self.delay = delay
        self._pending: list[int] = []

    def step(
        self, confidences: torch.Tensor, *, max_lengths: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Lengths for this step (Tensor (R,) int32); records this step's capacity for later."""
        if len(self._pending) >= self.delay:
            k = self._pending.pop(0)
            lengths = self._planner.admit_top_k(confidences, k, max_lengths=max_lengths)
        else:
            lengths = self._fallback.schedule(confidences, max_lengths=max_lengths)
        self._pending.append(self._planner.capacity(confidences, max_lengths=max_lengths))
        return lengths


def profile_sps(
    forward: Callable[[int], object],
    tokens: Sequence[int],
    *,
    warmup: int = 2,
    repeats: int = 10,
    synchronize: Callable[[], object] | None = None,
    interpolation: Literal["linear", "step"] = "linear",
) -> SpsTable:
    """Time ``forward(B)`` for a grid of token counts and return the curve as an :class:`SpsTable`.

    Grid points are interleaved within each repeat (so drift affects all of them alike) and the
    median is kept. Works with any callable, e.g. a target model's verification forward over B
    tokens. Do not calibrate a GPU deployment's scheduler with CPU timings (``build.md`` section 4).

    Parameters
    ----------
    forward : callable (int) -> object
        Runs one engine step of the given number of tokens.
    tokens : sequence of int
        Strictly increasing grid of token counts, >= 1.
    warmup, repeats : int
        Untimed rounds, then timed rounds.
    synchronize : callable, optional
        Called before reading the clock (e.g. ``torch.cuda.synchronize``).
    interpolation : {"linear", "step"}
        Passed to the table.

    Returns
    -------
    SpsTable
    """
    grid = [int(b) for b in tokens]
    if not grid or any(b < 1 for b in grid) or any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"tokens: expected a strictly increasing grid of ints >= 1, got {grid}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats, warmup: expected >= 1 and >= 0, got {repeats}, {warmup}")
    sync = synchronize or (lambda: None)
    samples: dict[int, list[float]] = {b: [] for b in grid}
    for it in range(warmup + repeats):
        for b in grid:
            sync()
            t0 = time.perf_counter()
            forward(b)
            sync()
            if it >= warmup:
                samples[b].append(time.perf_counter() - t0)
    times = [max(statistics.median(samples[b]), 1e-9) for b in grid]
    return SpsTable.from_step_times(grid, times, interpolation)
