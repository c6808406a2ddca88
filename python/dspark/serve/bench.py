"""``dspark bench serve``: a load generator for any OpenAI-compatible server.

:func:`run_benchmark` sends ``num_prompts`` streamed requests (``stream: true`` with
``stream_options.include_usage``) to ``/v1/completions`` or ``/v1/chat/completions``, at most
``concurrency`` at a time, issued all at once or by Poisson arrivals of ``request_rate`` per
second; it stops issuing and cancels what is in flight at ``duration_limit``. Each request is
a :class:`~dspark.serve.bench_stats.RequestRecord`; the run's metrics come from
:func:`~dspark.serve.bench_stats.summarize` (throughput, TTFT/TPOT/ITL/E2E, goodput) and, when
the server has dspark's ``/metrics``, :func:`~dspark.serve.bench_stats.spec_stats` (acceptance).
:func:`run_sweep` repeats the run over speculation modes (through ``/v1/dspark/speculation``:
no speculation, fixed K = 1..G, the scheduler) and concurrencies.

Errors are counted, never raised: an HTTP error, a broken stream or a timeout marks the request
failed (status and message kept). Nothing waits unbounded: connect/read timeouts per request,
the request count, and the duration limit per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from dspark.serve.bench_client import (
    first_model,
    get_speculation,
    open_client,
    request_body,
    scrape_metrics,
    send,
    set_speculation,
)
from dspark.serve.bench_stats import SLO, RequestRecord, spec_stats, summarize

__all__ = [
    "BenchConfig",
    "BenchResult",
    "load_bench_prompts",
    "run_benchmark",
    "run_sweep",
]

Prompt = str | list[int]


@dataclass
class BenchConfig:
    """Settings of one benchmark run (``dspark bench serve`` flags of the same names).

    Attributes
    ----------
    url : str
        Server root (a trailing ``/v1`` is accepted).
    model : str, optional
        Model id; default the first id of ``GET /v1/models``.
    endpoint : {"completions", "chat"}
    prompts : str or sequence of str, optional
        JSONL files, ``{"turns": [...]}`` (first turn used) or ``{"input_ids": [...]}`` per line
        (completions only); default the micro zoo's held-out code and prose prompts.
    num_prompts : int
        Requests per run: the prompts shuffled by ``seed``, repeated when there are fewer.
    concurrency : int
        Most requests in flight at once.
    request_rate : float
        Poisson arrival rate (requests/s); ``inf`` issues every request at once.
    max_tokens, temperature : int, float
        Sampling fields of every request.
    seed : int
        Seeds the prompt order and the arrival times.
    duration_limit : float
        Seconds per run; at the limit no more requests are issued and in-flight ones are
        cancelled (counted as ``cancelled``). ``inf`` disables it.
    slo_ttft_ms, slo_tpot_ms : float, optional
        Goodput bounds.
    ignore_eos : bool
        Send ``ignore_eos: true`` (dspark and vLLM honour it), so every request makes
        ``max_tokens`` tokens.
    timeout : float
        Connect and read (between two chunks) timeout per request, seconds.
    api_key : str, optional
        Sent as ``Authorization: Bearer``.
    warmup : int
        Requests sent one at a time before each run and not measured (connections, server
        warm-up after a mode switch), within their own ``duration_limit``; the ``/metrics``
        baseline is read after them.
    progress : bool
        A tqdm bar per run on stderr.
    """

    url: str = "http://127.0.0.1:8000"
    model: str | None = None
    endpoint: str = "completions"
    prompts: str | Sequence[str] | None = None
    num_prompts: int = 100
    concurrency: int = 1
    request_rate: float = math.inf
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    duration_limit: float = 3600.0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    ignore_eos: bool = False
    timeout: float = 60.0
    api_key: str | None = None
    warmup: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint: expected 'completions' or 'chat', got {self.endpoint!r}")
        for name in ("num_prompts", "concurrency", "max_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        for name in ("request_rate", "duration_limit", "timeout", "slo_ttft_ms", "slo_tpot_ms"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and v > 0):
                raise ValueError(f"{name}: expected a number > 0, got {v!r}")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise ValueError(f"warmup: expected an int >= 0, got {self.warmup!r}")
        if not (isinstance(self.temperature, int | float) and self.temperature >= 0):
            raise ValueError(f"temperature: expected a number >= 0, got {self.temperature!r}")

    @property
    def base_url(self) -> str:
        """``url`` without a trailing ``/`` or ``/v1``."""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass
class BenchResult:
    """One run: its setting, the summary and speculation statistics, and every record."""

    mode: str
    k: int | None
    concurrency: int
    request_rate: float
    summary: dict[str, Any]
    spec: dict[str, Any]
    records: list[RequestRecord] = field(repr=False, default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The run's row of the JSON report (``request_rate`` null = all at once)."""
        rate = None if math.isinf(self.request_rate) else self.request_rate
        head = {"mode": self.mode, "k": self.k, "concurrency": self.concurrency}
        return {**head, "request_rate": rate, **self.summary, **self.spec}


def load_bench_prompts(
    paths: str | Sequence[str] | None, num_prompts: int, seed: int = 0, *, chat: bool = False
) -> list[Prompt]:
    """``num_prompts`` prompts (text, or token ids) from JSONL files, in a seeded order."""
    from dspark.eval.datasets import load_prompts

    if paths is None:
        from dspark.zoo.package import ZOO_DIR

        paths = [str(ZOO_DIR / "prompts" / f"{d}.jsonl") for d in ("code", "prose")]
    pool: list[Prompt] = []
    for path in [paths] if isinstance(paths, str) else paths:
        for p in load_prompts(path):
            if chat and p.text is None:
                raise ValueError(
                    f"prompts: {path} line {p.index + 1} holds token ids; the chat endpoint "
                    "needs text ({'turns': [...]}); use --endpoint completions"
                )
            pool.append(list(p.input_ids) if p.text is None and p.input_ids else str(p.text))
    order = random.Random(seed).sample(range(len(pool)), len(pool))
    return [pool[order[i % len(pool)]] for i in range(num_prompts)]


async def _warmup(
    client: httpx.AsyncClient, cfg: BenchConfig, model: str, prompts: Sequence[Prompt]
) -> None:
    """``cfg.warmup`` unrecorded requests, within ``duration_limit`` (failures show in the run)."""

    async def send_all() -> None:
        for i in range(cfg.warmup):
            body = request_body(cfg, model, prompts[i % len(prompts)])
            await send(client, cfg, body, RequestRecord(-1))

    limit = None if math.isinf(cfg.duration_limit) else cfg.duration_limit
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(send_all(), timeout=limit)


async def run_benchmark(
    cfg: BenchConfig,
    *,
    mode: str | None = None,
    k: int | None = None,
    prompts: Sequence[Prompt] | None = None,
    client: httpx.AsyncClient | None = None,
) -> BenchResult:
    """One run at ``cfg.concurrency`` against ``cfg.url``.

    Parameters
    ----------
    cfg : BenchConfig
    mode, k : optional
        Label of the run; by default read from ``GET /v1/dspark/speculation`` (``"server"``
        when the server has no such endpoint).
    prompts : sequence of (str or list of int), optional
        Overrides ``cfg.prompts``; used as given (``num_prompts`` of them are cycled).
    client : httpx.AsyncClient, optional
        Reused (the sweep shares one); by default one is opened and closed here.

    Returns
    -------
    BenchResult
    """
    if client is None:
        async with open_client(cfg, cfg.concurrency) as own:
            return await run_benchmark(cfg, mode=mode, k=k, prompts=prompts, client=own)
    model = cfg.model or await first_model(client)
    if prompts is None:
        prompts = load_bench_prompts(
            cfg.prompts, cfg.num_prompts, cfg.seed, chat=cfg.endpoint == "chat"
        )
    if mode is None:
        spec = await get_speculation(client)
        mode, k = ("server", None) if spec is None else (str(spec.get("mode")), spec.get("k"))
        k = k if mode == "fixed" else None  # the scheduler's k is only its upper bound
    from tqdm.auto import tqdm

    await _warmup(client, cfg, model, prompts)
    before = await scrape_metrics(client)
    records: list[RequestRecord] = []
    gate = asyncio.Semaphore(cfg.concurrency)
    arrivals = random.Random(cfg.seed)
    bar = tqdm(
        total=cfg.num_prompts,
        desc=f"{mode}{'' if k is None else f' k={k}'} c={cfg.concurrency}",
        file=sys.stderr,
        disable=not cfg.progress,
        leave=False,
    )
    t0 = time.perf_counter()

    async def one(i: int, prompt: Prompt) -> None:
        async with gate:
            rec = RequestRecord(index=i, start=time.perf_counter() - t0)
            records.append(rec)
            try:
                await send(client, cfg, request_body(cfg, model, prompt), rec)
            finally:
                bar.update(1)

    tasks: list[asyncio.Task[None]] = []

    async def issue() -> None:
        due = 0.0  # arrival times are absolute (from t0), so sleep overshoot does not add up
        for i in range(cfg.num_prompts):
            if i and not math.isinf(cfg.request_rate):
                due += arrivals.expovariate(cfg.request_rate)
                await asyncio.sleep(max(0.0, t0 + due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, prompts[i % len(prompts)])))
        await asyncio.gather(*tasks)

    main = asyncio.create_task(issue())
    try:
        limit = None if math.isinf(cfg.duration_limit) else cfg.duration_limit
        done, _ = await asyncio.wait({main}, timeout=limit)
    finally:
        for t in (main, *tasks):
            t.cancel()
        await asyncio.gather(main, *tasks, return_exceptions=True)
        bar.close()
    duration = time.perf_counter() - t0
    if done:
        main.result()  # a bug in this module, not a request failure: surface it
    summary = summarize(records, duration, SLO(cfg.slo_ttft_ms, cfg.slo_tpot_ms))
    spec_out = spec_stats(before, await scrape_metrics(client))
    return BenchResult(mode, k, cfg.concurrency, cfg.request_rate, summary, spec_out, records)


async def run_sweep(
    cfg: BenchConfig,
    concurrencies: Sequence[int],
    *,
    speculation: bool = True,
    ks: Sequence[int] | None = None,
) -> tuple[list[BenchResult], list[dict[str, Any]]]:
    """Every speculation mode x every concurrency; returns the runs and the modes skipped.

    With ``speculation`` and a server that has ``/v1/dspark/speculation``, the modes are
    ``none``, ``fixed`` with K = 1..G (G = its ``max_k``; or the ``ks`` given) and
    ``scheduler``, each set by PUT
    before its run (a mode the server refuses, e.g. 400 without a drafter, is skipped with its
    reason); the server's setting is restored at the end. Otherwise every run is mode
    ``"server"``. Runs are ordered concurrency-major (as given), every mode at one concurrency
    back to back, so that a slow drift of the machine (warm-up, other jobs) biases the modes
    compared at one concurrency alike rather than whichever mode ran first.
    """
    cs = [int(c) for c in concurrencies]
    if not cs or min(cs) < 1:
        raise ValueError(f"concurrencies: expected ints >= 1, got {list(concurrencies)!r}")
    results: list[BenchResult] = []
    skipped: list[dict[str, Any]] = []
    async with open_client(cfg, max(cs)) as client:
        model = cfg.model or await first_model(client)
        cfg = dataclasses.replace(cfg, model=model)
        prompts = load_bench_prompts(
            cfg.prompts, cfg.num_prompts, cfg.seed, chat=cfg.endpoint == "chat"
        )
        original = await get_speculation(client) if speculation else None
        plan: list[tuple[str, int | None]] = [("server", None)]
        if original is not None:
            fixed = range(1, int(original.get("max_k") or 0) + 1) if ks is None else ks
            plan = [("none", None), *(("fixed", int(k)) for k in fixed), ("scheduler", None)]
        try:
            refused: set[tuple[str, int | None]] = set()
            for c in cs:
                run_cfg = dataclasses.replace(cfg, concurrency=c)
                for mode, k in plan:
                    if (mode, k) in refused:
                        continue
                    if original is not None and (why := await set_speculation(client, mode, k)):
                        skipped.append({"mode": mode, "k": k, "reason": why})
                        refused.add((mode, k))
                        continue
                    results.append(
                        await run_benchmark(run_cfg, mode=mode, k=k, prompts=prompts, client=client)
                    )
        finally:
            mode, k = str((original or {}).get("mode")), (original or {}).get("k")
            if original is not None and (why := await set_speculation(client, mode, k)):
                print(f"bench: could not restore speculation {mode} k={k}: {why}", file=sys.stderr)
    return results, skipped
