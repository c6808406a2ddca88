"""Shared benchmark harness: a timer, a copy-bandwidth probe and one table format for every op.

Columns: case | ref ms | dspark ms | speedup | GB/s | % of copy peak. CPU times are the median of
`iters` runs after warm-up; the thread count is printed. No asserts: this measures, tests check.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = [
    "Table",
    "add_timing_args",
    "copy_bandwidth_gbs",
    "cpu_time_ms",
    "machine_line",
    "time_ms",
    "timer_from_args",
]


def time_ms(fn: Callable[[], object], *, warmup: int = 2, iters: int = 10) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cpu_time_ms(fn: Callable[[], object], *, warmup: int = 2, iters: int = 10) -> float:
    """Median process CPU time of fn() in ms: robust on a shared machine, valid for 1 thread."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1e3)
    return statistics.median(times)


def add_timing_args(ap) -> None:
    """--threads and --clock options shared by every benchmark."""
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu = process CPU time (use with --threads 1 on a loaded machine)",
    )


def timer_from_args(args) -> Callable[..., float]:
    if args.threads:
        torch.set_num_threads(args.threads)
    return time_ms if args.clock == "wall" else cpu_time_ms


_BW: float | None = None


def copy_bandwidth_gbs(nbytes: int = 512 << 20) -> float:
    """Measured memory copy bandwidth (bytes read + written per second, GB/s), cached."""
    global _BW
    if _BW is None:
        src = torch.empty(nbytes // 4, dtype=torch.float32).fill_(1.0)
        dst = torch.empty_like(src)
        ms = time_ms(lambda: dst.copy_(src), warmup=2, iters=7)
        _BW = 2 * nbytes / (ms * 1e-3) / 1e9
    return _BW


def machine_line() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, measured copy bandwidth {copy_bandwidth_gbs():.1f} GB/s"
    )


@dataclass
class Table:
    title: str
    rows: list[tuple] = field(default_factory=list)

    def add(
        self, case: str, ref_ms: float | None, ours_ms: float, nbytes: float | None = None
    ) -> None:
        self.rows.append((case, ref_ms, ours_ms, nbytes))

    def render(self) -> str:
        peak = copy_bandwidth_gbs()
        head = "| case | ref ms | dspark ms | speedup | GB/s | % of copy peak |"
        lines = [
            f"### {self.title}",
            "",
            machine_line(),
            "",
            head,
            "|---|---:|---:|---:|---:|---:|",
        ]
        speedups = []
        for case, ref, ours, nbytes in self.rows:
            sp = ref / ours if ref else None
            if sp:
                speedups.append(sp)
            gbs = nbytes / (ours * 1e-3) / 1e9 if nbytes else None
            lines.append(
                f"| {case} | {'-' if ref is None else f'{ref:.2f}'} | {ours:.3f} | "
                f"{'-' if sp is None else f'{sp:.1f}x'} | {'-' if gbs is None else f'{gbs:.1f}'} | "
                f"{'-' if gbs is None else f'{100 * gbs / peak:.0f}%'} |"
            )
        if speedups:
            gm = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
            lines.append(f"| geometric mean | | | {gm:.1f}x | | |")
        return "\n".join(lines)

    def print(self) -> None:
        print(self.render(), flush=True)
