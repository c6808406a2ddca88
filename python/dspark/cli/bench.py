"""``dspark bench serve``: load-test any OpenAI-compatible server (see :mod:`dspark.serve.bench`).

The settings are the fields of :class:`BenchServeRun` (concurrencies, sweep, outputs) and of
:class:`dspark.serve.bench.BenchConfig` (one run), in one flat namespace: every flag sets the
key of its name (``--concurrency`` sets ``concurrencies``: one value or a comma list), and
``--config`` / ``--set`` may set any of them (``--set timeout=10``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from dspark.cli._settings import add_config_arguments, add_flag, construct


@dataclass
class BenchServeRun:
    """What ``dspark bench serve`` runs and writes (each run's settings are a BenchConfig).

    ``concurrencies`` is an int, a comma list (``"1,4,16"``) or a list; None runs the
    BenchConfig's ``concurrency``. ``sweep`` runs every speculation mode at each concurrency;
    ``sweep_k`` (same forms) limits its fixed K values (default 1..G).
    """

    concurrencies: int | str | Sequence[int] | None = None
    sweep: bool = False
    sweep_k: int | str | Sequence[int] | None = None
    json: str | None = None
    plot: str | None = None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks against a running server")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="TARGET")
    s = bsub.add_parser(
        "serve",
        help="load-test an OpenAI-compatible server (dspark serve or a peer)",
        description="Stream requests to an OpenAI-compatible server at a fixed concurrency or "
        "with Poisson arrivals; report throughput, TTFT/TPOT/ITL/E2E (mean, p50, p99), goodput "
        "and, from dspark's /metrics, acceptance. --sweep also varies the speculation mode "
        "(none, fixed K=1..G, scheduler) through /v1/dspark/speculation.",
    )
    add_flag(s, "--url", help="server root (default: http://127.0.0.1:8000)")
    add_flag(s, "--model", help="model id (default: the first of GET /v1/models)")
    add_flag(s, "--endpoint", choices=["completions", "chat"], help="(default: completions)")
    add_flag(
        s,
        "--prompts",
        nargs="+",
        help='JSONL prompt files, {"turns": [...]} or {"input_ids": [...]} per line '
        "(default: the micro zoo's held-out prompts)",
    )
    add_flag(s, "--num-prompts", type=int, help="requests per run (default: 100)")
    add_flag(
        s,
        "--concurrency",
        key="concurrencies",
        metavar="C[,C...]",
        help="requests in flight at most; a comma list runs each (default: 1)",
    )
    add_flag(
        s, "--request-rate", type=float, help="Poisson arrivals per second (default: inf, at once)"
    )
    add_flag(s, "--max-tokens", type=int, help="(default: 128)")
    add_flag(s, "--temperature", type=float, help="(default: 0)")
    add_flag(s, "--seed", type=int, help="prompt order and arrival times (default: 0)")
    add_flag(
        s,
        "--duration-limit",
        type=float,
        metavar="SECONDS",
        help="per run: stop issuing and cancel in-flight requests (default: 3600; inf: none)",
    )
    add_flag(s, "--slo-ttft-ms", type=float, help="goodput bound on TTFT")
    add_flag(s, "--slo-tpot-ms", type=float, help="goodput bound on TPOT")
    add_flag(s, "--ignore-eos", action="store_true", help="send ignore_eos (always max tokens)")
    add_flag(s, "--timeout", type=float, help="connect/read timeout per request (default: 60)")
    add_flag(s, "--api-key", help="sent as Authorization: Bearer")
    add_flag(s, "--warmup", type=int, help="unmeasured requests before each run (default: 1)")
    add_flag(
        s, "--sweep", action="store_true", help="none, fixed K=1..G, scheduler x concurrencies"
    )
    add_flag(s, "--sweep-k", metavar="K[,K...]", help="the sweep's fixed K values (default 1..G)")
    add_flag(s, "--json", metavar="PATH", help="write the runs as JSON")
    add_flag(s, "--plot", metavar="PATH", help="PNG: output tok/s and TPOT p50 vs concurrency")
    add_flag(s, "--no-progress", key="progress", action="store_false")
    add_config_arguments(s, "BenchServeRun and BenchConfig settings")
    s.set_defaults(func=run)


def _ints(flag: str, value: int | str | Sequence[int]) -> list[int]:
    items = str(value).split(",") if isinstance(value, int | str) else list(value)
    try:
        out = [int(c) for c in items]
    except (TypeError, ValueError):
        out = []
    if not out or min(out) < 1:
        raise ValueError(f"{flag}: expected ints >= 1 (e.g. 4 or 1,4,16), got {value!r}")
    return out


def run(args: argparse.Namespace) -> int:
    from dspark.serve.bench import BenchConfig, run_benchmark, run_sweep
    from dspark.serve.bench_report import format_table, plot_sweep, write_json

    try:
        what, cfg = construct(args, BenchServeRun, BenchConfig)
        cs = [cfg.concurrency]
        if what.concurrencies is not None:
            cs = _ints("--concurrency", what.concurrencies)
        ks = None if what.sweep_k is None else _ints("--sweep-k", what.sweep_k)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"dspark bench serve: {e}") from None

    async def main() -> tuple[list, list]:
        if what.sweep:
            return await run_sweep(cfg, cs, ks=ks)
        runs = [await run_benchmark(dataclasses.replace(cfg, concurrency=c)) for c in cs]
        return runs, []

    try:
        runs, skipped = asyncio.run(main())
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"dspark bench serve: {e}") from None
    print(format_table(runs))
    for s in skipped:
        print(f"skipped mode {s['mode']} k={s['k']}: {s['reason']}", file=sys.stderr)
    for r in runs:
        for msg in r.summary["error_samples"]:
            print(f"error ({r.mode} c={r.concurrency}): {msg}", file=sys.stderr)
    if what.json:
        print(f"json: {write_json(what.json, runs, cfg, skipped)}")
    if what.plot:
        print(f"plot: {plot_sweep([r.to_json() for r in runs], what.plot)}")
    return 0 if any(r.summary["completed"] for r in runs) else 1
