"""Step-rate profiles of a target engine: SpsTable, its online refinement, and a profiler.

``SpsTable`` is the SPS(B) curve of ``docs/algorithms.md`` section 4 (C++ core in
``csrc/scheduler/sps_table.h``); ``LoadMonitor`` refines it from observed steps; ``profile_sps``
times any callable to build one. Re-exported by :mod:`dspark.scheduler`.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from dspark import _C
from dspark.utils.io import atomic_write_json, load_json

__all__ = ["LoadMonitor", "SpsTable", "profile_sps"]

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
            _floats("tokens", tokens),
            _floats("steps_per_second", steps_per_second),
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
        """ "linear" or "step"."""
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
        """Write JSON atomically (:func:`dspark.utils.io.atomic_write_json`)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SpsTable:
        """Read a table written by :meth:`save` (validated)."""
        d = load_json(path)
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"path: {path}: {e}") from None

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
    tokens. Do not calibrate a GPU deployment's scheduler with CPU timings (``docs/build.md``
    section 4).

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
    if not grid or any(b < 1 for b in grid) or any(b <= a for a, b in itertools.pairwise(grid)):
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
