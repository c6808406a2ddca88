"""Serving simulation: static draft lengths vs the confidence-scheduled prefix scheduler.

Run from the repo root: ``python -m bench.sim_serving [--steps 1500] [--curve jagged|smooth]``.
Prints a table per concurrency level and saves ``bench/results/sim_serving.png`` (throughput vs
per-user speed, and verified drafts per request vs concurrency; cf. the paper's figures 7 and 8).

Model (decode phase only; prefill is not simulated):
- Closed loop: C users; each keeps one request in flight and submits the next when it finishes
  (so requests arrive over time, with new types and lengths). Output lengths are uniform in
  [128, 768] tokens; half the requests are chat, half code.
- Drafter: DSpark-style, G = 7 confidences per request per step. Per-position conditional
  acceptance is sigmoid(z_k), z_k = mu_type[k] + s + e_k with a per-round shared shift s ~ N(0, 0.8)
  and per-position noise e_k ~ N(0, 1.0); mu is logit(0.70 -> 0.60) over positions for chat and
  logit(0.88 -> 0.82) for code (tau at G = 7 ~ 2.7 chat, ~4.9 code, in line with the paper's
  MT-Bench and HumanEval numbers). Confidences are calibrated (what STS delivers); acceptance is
  drawn sequentially with those probabilities.
- Cost: step time = draft time (0.8 ms + 1 us per drafted token; none for static length 0) + the
  target's T(B) for B = R + sum(lengths) tokens. T(B) is a GPU-shaped synthetic curve of an 8B
  dense model on one H100-class GPU: 1.5 ms fixed (launches, sampling) + max(memory floor 6.5 ms,
  compute 0.04 ms per token) + 2 us per token (attention, KV writes); "jagged" rounds the compute
  term up to 64-token GEMM tiles and B up to captured CUDA-graph sizes (1, 2, 4, then multiples of
  8), "smooth" does neither. It is given to the schedulers as a dense SpsTable (what a start-up
  profile of every size would record). No CPU timing is involved (docs/build.md section 4).
- Policies: static length 0..G; "sched" (Algorithm 1, early stop, on the dense profile);
  "sched-coarse" (early stop on a profile taken every 64 tokens, linearly interpolated, which
  smooths the staircase); "async" (capacity from the confidences of two steps earlier, then
  global top-K by current survival; K is 0 when not drafting at all would be faster, and the
  drafter is then skipped except every 8th step); "sched+monitor" (early stop on a LoadMonitor
  over the coarse grid that starts from a curve 40% too fast and learns from noisy step times
  with 2% ten-fold stalls). All policies share the random numbers of each user and step.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dspark
from dspark.scheduler import AsyncPrefixScheduler

G = 7
CHAT_MU = np.log(np.linspace(0.70, 0.60, G) / (1 - np.linspace(0.70, 0.60, G)))
CODE_MU = np.log(np.linspace(0.88, 0.82, G) / (1 - np.linspace(0.88, 0.82, G)))
MAX_TOKENS = 4096
PROBE = 8  # async policy: draft at least every PROBE-th step even when K == 0


def gpu_step_time(b: np.ndarray | float, jagged: bool = True) -> np.ndarray:
    """Synthetic target step time in seconds for B tokens (see the module docstring)."""
    b = np.asarray(b, dtype=np.float64)
    if jagged:
        b = np.where(b <= 4, 2.0 ** np.ceil(np.log2(np.maximum(b, 1))), np.ceil(b / 8) * 8)
        compute = np.ceil(b / 64) * 64 * 4.0e-5
    else:
        compute = b * 4.0e-5
    return 1.5e-3 + np.maximum(6.5e-3, compute) + 2e-6 * b


def gpu_step_time_table(jagged: bool = True) -> dspark.SpsTable:
    """Dense profile (every B in 1..4096) of the synthetic curve."""
    grid = np.arange(1, MAX_TOKENS + 1)
    return dspark.SpsTable.from_step_times(grid.tolist(), gpu_step_time(grid, jagged).tolist())


def draft_time(num_drafted: int) -> float:
    return 0.0 if num_drafted == 0 else 8e-4 + 1e-6 * num_drafted


@dataclass
class Result:
    throughput: float  # tokens / s over all users
    per_user: float  # mean over finished requests of tokens / latency
    budget: float  # mean verified drafts per request per step
    tau: float  # mean tokens emitted per request per step


def profile(
    jagged: bool, grid: np.ndarray, extra: float = 0.0, scale: float = 1.0
) -> dspark.SpsTable:
    """Profile of the synthetic engine (target step + `extra` seconds of drafting) on `grid`."""
    return dspark.SpsTable.from_step_times(
        grid.tolist(), (scale * (gpu_step_time(grid, jagged) + extra)).tolist()
    )


DENSE = np.arange(1, MAX_TOKENS + 1)
# Start-up profile on a coarse grid (powers of two, then every 64 tokens): linear interpolation
# between grid points spreads each staircase jump over the 64 tokens before it.
COARSE = np.unique(np.concatenate([[1, 2, 4, 8, 16, 32], np.arange(64, MAX_TOKENS + 1, 64)]))


def make_scheduler(policy: str, jagged: bool, concurrency: int):
    """The policy's scheduler; its curve includes this run's (constant) drafting time."""
    extra = draft_time(concurrency * G)
    if policy == "sched":
        return dspark.PrefixScheduler(profile(jagged, DENSE, extra))
    if policy == "sched-coarse":
        return dspark.PrefixScheduler(profile(jagged, COARSE, extra))
    if policy == "async":
        return AsyncPrefixScheduler(profile(jagged, DENSE), delay=2, draft_seconds=extra)
    if policy == "sched+monitor":
        # The start-up profile was taken on a quieter engine: every step 40% faster than now.
        wrong = profile(jagged, COARSE, extra, scale=1 / 1.4)
        return dspark.LoadMonitor(wrong, alpha=0.1)
    return None


def simulate(policy: str, concurrency: int, steps: int, seed: int, jagged: bool) -> Result:
    c = concurrency
    sched = make_scheduler(policy, jagged, c)
    monitor = None
    if isinstance(sched, dspark.LoadMonitor):
        monitor, sched = sched, dspark.PrefixScheduler(sched)
    # Common random numbers: user i's j-th request (type, length) and step t's draws are the same
    # for every policy, whatever the policy's timing.
    users = [np.random.default_rng([seed, 1, i]) for i in range(c)]

    def new_request(i: int) -> tuple[int, int]:
        return int(users[i].integers(0, 2)), int(users[i].integers(128, 769))

    kind, remaining = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    for i in range(c):
        kind[i], remaining[i] = new_request(i)
    start, produced = np.zeros(c), np.zeros(c)
    now, verified, emitted_sum = 0.0, 0, 0
    speeds: list[float] = []
    extra = draft_time(c * G)
    for t in range(steps):
        rng = np.random.default_rng([seed, 2, t])
        mu = np.where(kind[:, None] == 1, CODE_MU[None, :], CHAT_MU[None, :])
        z = mu + rng.normal(0, 0.8, (c, 1)) + rng.normal(0, 1.0, (c, G))
        conf = 1 / (1 + np.exp(-z))
        u = rng.random((c, G))
        noise, stall = rng.normal(1.0, 0.02), rng.random() < 0.02
        cap = np.minimum(remaining - 1, G).astype(np.int32)
        drafted = policy != "0"
        if isinstance(sched, AsyncPrefixScheduler) and sched.next_capacity == 0 and t % PROBE:
            # K (known before drafting) is 0: skip the drafter; every PROBE-th step drafts anyway
            # so fresh confidences can raise K again.
            sched.skip()
            lengths, drafted = np.zeros(c, dtype=np.int32), False
        elif sched is None:
            lengths = np.minimum(int(policy), cap)
        else:
            conf_t, caps = torch.from_numpy(conf.astype(np.float32)), torch.from_numpy(cap)
            if isinstance(sched, AsyncPrefixScheduler):
                lengths = sched.step(conf_t, max_lengths=caps).numpy()
            else:
                lengths = sched.schedule(conf_t, max_lengths=caps).numpy()
        accepted = np.cumprod(u < conf, axis=1) * (np.arange(G)[None, :] < lengths[:, None])
        emitted = np.minimum(accepted.sum(1) + 1, remaining)
        b = c + int(lengths.sum())
        dt = (extra if drafted else 0.0) + float(gpu_step_time(b, jagged))
        if monitor is not None:
            monitor.observe(b, dt * noise * (10.0 if stall else 1.0))
        now += dt
        verified += int(lengths.sum())
        emitted_sum += int(emitted.sum())
        produced += emitted
        remaining -= emitted
        for i in np.flatnonzero(remaining <= 0):
            speeds.append(produced[i] / (now - start[i]))
            kind[i], remaining[i] = new_request(i)
            start[i], produced[i] = now, 0
    per_user = float(np.mean(speeds)) if speeds else float(np.mean(produced / now))
    return Result(emitted_sum / now, per_user, verified / (steps * c), emitted_sum / (steps * c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--curve", choices=["jagged", "smooth"], default="jagged")
    ap.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 16, 32, 64, 128, 256])
    ap.add_argument("--out", default="bench/results/sim_serving.png")
    args = ap.parse_args()
    jagged = args.curve == "jagged"
    policies = [str(n) for n in range(G + 1)] + ["sched", "sched-coarse", "async", "sched+monitor"]
    results: dict[str, dict[int, Result]] = {p: {} for p in policies}
    print(
        f"# sim_serving: curve={args.curve}, G={G}, {args.steps} steps per run, "
        "throughput in tokens/s (per-user tokens/s)"
    )
    print()
    print(
        "| C | "
        + " | ".join(f"static {p}" if p.isdigit() else p for p in policies)
        + " | best static | sched vs best | coarse vs best | async vs best |"
    )
    print("|---:|" + "---:|" * (len(policies) + 4))
    for c in args.concurrency:
        for p in policies:
            results[p][c] = simulate(p, c, args.steps, seed=1000 + c, jagged=jagged)
        best = max(range(G + 1), key=lambda n: results[str(n)][c].throughput)
        bt = results[str(best)][c].throughput
        cells = [
            f"{results[p][c].throughput:,.0f} ({results[p][c].per_user:.0f})" for p in policies
        ]
        print(
            f"| {c} | " + " | ".join(cells) + f" | {best} | "
            f"{100 * (results['sched'][c].throughput / bt - 1):+.1f}% | "
            f"{100 * (results['sched-coarse'][c].throughput / bt - 1):+.1f}% | "
            f"{100 * (results['async'][c].throughput / bt - 1):+.1f}% |"
        )
    print()
    print(
        "verified drafts per request per step (budget): "
        + ", ".join(
            f"C={c}: " + " / ".join(f"{p} {results[p][c].budget:.2f}" for p in policies[G + 1 :])
            for c in args.concurrency
        )
    )
    plot(results, args.concurrency, Path(args.out), args.curve)


def plot(results: dict[str, dict[int, Result]], conc: list[int], out: Path, curve: str) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    for p, res in results.items():
        xs = [res[c].per_user for c in conc]
        ys = [res[c].throughput for c in conc]
        style = (
            {"lw": 2.2, "marker": "o"} if not p.isdigit() else {"lw": 1, "ls": "--", "marker": "."}
        )
        ax1.plot(xs, ys, label=p if not p.isdigit() else f"static {p}", **style)
    ax1.set_xlabel("per-user tokens/s")
    ax1.set_ylabel("throughput, tokens/s")
    ax1.set_yscale("log")
    ax1.set_title(f"throughput vs per-user speed ({curve} curve)")
    ax1.legend(fontsize=7, ncol=2)
    for p in ("sched", "sched-coarse", "async", "sched+monitor"):
        ax2.plot(conc, [results[p][c].budget for c in conc], marker="o", label=p)
    best = [max(range(G + 1), key=lambda n: results[str(n)][c].throughput) for c in conc]
    ax2.plot(conc, best, ls="--", marker="s", color="0.4", label="best static length")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("concurrency (requests in flight)")
    ax2.set_ylabel("verified drafts per request per step")
    ax2.set_title("verification budget vs load")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
