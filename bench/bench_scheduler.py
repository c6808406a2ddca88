"""Scheduling latency of dspark.PrefixScheduler vs the Python references.

Run from the repo root: ``python -m bench.bench_scheduler``. Columns (microseconds, median of
repeated calls after warm-up): the loop reference (Algorithm 1 written literally), the vectorised
NumPy reference (the fair baseline; both in tests/reference/scheduler.py and tested against each
other), dspark through the Python API (tensor checks included), and the raw binding. Speed-up is
vectorised reference / dspark API. The target is < 50 us for R = 256, G = 8. No asserts.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from tests.reference.scheduler import prefix_schedule_ref, prefix_schedule_vec

import dspark
from bench.sim_serving import MAX_TOKENS, gpu_step_time


def time_us(fn: Callable[[], object], min_time: float = 0.2, max_iters: int = 20_000) -> float:
    """Median wall time of fn() in microseconds (batches of calls so the clock is not the cost)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, min(1000, int(2e-4 / one)))
    rounds = max(5, min(max_iters // batch, int(min_time / (one * batch)) + 1))
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(samples)


def main() -> None:
    # The smooth GPU-shaped curve of bench/sim_serving.py, profiled densely (every B).
    grid = np.arange(1, MAX_TOKENS + 1, dtype=np.float64)
    secs = gpu_step_time(grid, jagged=False)
    table = dspark.SpsTable.from_step_times(grid.tolist(), secs.tolist())

    def sps_vec(b: np.ndarray) -> np.ndarray:
        # Linear step-time interpolation, extrapolated with the last slope (as SpsTable does).
        b = np.asarray(b, dtype=np.float64)
        t = np.interp(b, grid, secs)
        slope = max((secs[-1] - secs[-2]) / (grid[-1] - grid[-2]), 0.0)
        return 1.0 / np.where(b > grid[-1], secs[-1] + slope * (b - grid[-1]), t)

    print(
        f"# bench_scheduler: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}; the walk is single-threaded. Times in microseconds."
    )
    print("# schedule: Algorithm 1 with the lossless early stop (PrefixScheduler.schedule).")
    print("# capacity: the async variant's stage 1, a global search over every candidate")
    print("# (PrefixScheduler.capacity; reference: the vectorised walk without early stop).")
    print()
    print(
        "| case | ref loop us | ref numpy us | dspark us | dspark _C us | speedup vs numpy | "
        "admitted |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    speedups = []
    gen = torch.Generator().manual_seed(0)
    sched = dspark.PrefixScheduler(table)
    for early_stop in (True, False):
        for r in (1, 64, 256, 1024):
            for g in (4, 8, 16):
                conf = 0.55 + 0.45 * torch.rand(r, g, generator=gen)  # typical drafter confidences
                conf_np, conf_list = conf.numpy(), conf.tolist()
                out = torch.empty(r, dtype=torch.int32)
                ref = prefix_schedule_vec(conf_np, sps_vec, early_stop=early_stop)
                if early_stop:
                    want = sched.schedule(conf)
                    same, admitted = want.tolist() == ref.tolist(), int(want.sum())
                else:
                    admitted = sched.capacity(conf)
                    same = admitted == int(ref.sum())
                t_loop = time_us(
                    lambda c=conf_list, e=early_stop: prefix_schedule_ref(c, table, e),
                    min_time=0.1,
                    max_iters=200,
                )
                t_vec = time_us(
                    lambda c=conf_np, e=early_stop: prefix_schedule_vec(c, sps_vec, early_stop=e)
                )
                if early_stop:
                    t_api = time_us(lambda c=conf: sched.schedule(c))
                    t_c = time_us(lambda c=conf, o=out: sched._impl.schedule(c, None, -1, o))
                else:
                    t_api = time_us(lambda c=conf: sched.capacity(c))
                    t_c = time_us(lambda c=conf: sched._impl.capacity(c, None, -1))
                speedups.append(t_vec / t_api)
                name = "schedule" if early_stop else "capacity"
                print(
                    f"| {name} R={r} G={g} | {t_loop:.0f} | {t_vec:.1f} | {t_api:.1f} | "
                    f"{t_c:.1f} | {t_vec / t_api:.1f}x | "
                    f"{admitted}/{r * g}{'' if same else ' MISMATCH'} |"
                )
    gm = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
    print(f"| geometric mean | | | | | {gm:.1f}x | |")


if __name__ == "__main__":
    main()
