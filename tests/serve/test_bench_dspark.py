"""`dspark bench serve` against the real `dspark serve` on a tiny model (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from dspark.engine import Engine
from dspark.models import build_drafter
from dspark.serve.bench import BenchConfig, run_sweep
from dspark.serve.bench_stats import parse_metrics
from dspark.serve.launch import ServerThread, build_server
from tests._tiny import tiny_qwen3, tiny_tokenizer

PROMPTS = [[5, 17, 200, 3, 99], [42] * 9, [7, 8, 9], list(range(30, 50))]


def _generated(url: str) -> float:
    return parse_metrics(httpx.get(url + "/metrics").text)[("dspark_generation_tokens_total", ())]


def test_bench_sweep_against_dspark_serve(tmp_path):
    target = tiny_qwen3(vocab=260, logit_scale=20.0)
    drafter = build_drafter("dspark", target, num_layers=1, block_size=2).eval()
    engine = Engine(
        target, drafter, page_size=8, max_model_len=64, speculation="fixed", max_num_seqs=4
    )
    prompts = tmp_path / "ids.jsonl"
    prompts.write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in PROMPTS))
    cfg = BenchConfig(
        num_prompts=4, max_tokens=6, ignore_eos=True, prompts=str(prompts), progress=False
    )
    with ServerThread(build_server(engine, tiny_tokenizer(), "tiny")) as srv:
        before = _generated(srv.url)
        runs, skipped = asyncio.run(run_sweep(BenchConfig(**{**vars(cfg), "url": srv.url}), [3]))
        generated = _generated(srv.url) - before
        setting = httpx.get(srv.url + "/v1/dspark/speculation").json()
    modes = [(r.mode, r.k) for r in runs]
    assert modes == [("none", None), ("fixed", 1), ("fixed", 2), ("scheduler", None)]
    assert skipped == []
    assert setting["mode"] == "fixed"  # restored
    for r in runs:
        s = r.summary
        assert (s["completed"], s["errors"], s["total_output_tokens"]) == (4, 0, 4 * 6)
        assert s["total_input_tokens"] == sum(map(len, PROMPTS))  # the server's usage
        assert 0 < s["ttft_p50_ms"] <= s["e2e_p50_ms"]
        acc = r.spec["mean_acceptance_length"]
        if r.mode == "none":
            assert acc in (None, pytest.approx(1.0))
        else:
            assert 1.0 <= acc <= 1.0 + (r.k or 2)
            assert all(p is None or 0.0 <= p <= 1.0 for p in r.spec["per_position_acceptance"])
    # every token the bench counted is one the server says it generated (plus the warm-ups)
    warmup = len(runs) * cfg.warmup * cfg.max_tokens
    assert generated == sum(r.summary["total_output_tokens"] for r in runs) + warmup
