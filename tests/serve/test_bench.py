"""`dspark bench serve` against a stub server with known latencies, and its pure metrics."""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import time

import numpy as np
import pytest

from dspark.cli import main
from dspark.serve.bench import BenchConfig, load_bench_prompts, run_benchmark, run_sweep
from dspark.serve.bench_report import format_table
from dspark.serve.bench_stats import SLO, RequestRecord, parse_metrics, spec_stats, summarize
from tests.serve._stub import MODEL, StubConfig, serve_stub

# Latencies of the stub used for the timing checks: first chunk at 40 ms, then one chunk of two
# tokens every 10 ms; 16 tokens = 8 chunks, so e2e = 40 + 7 * 10 = 110 ms and TPOT = 70 / 15.
TIMED = StubConfig(ttft_s=0.040, chunk_interval_s=0.010, tokens_per_chunk=2)
MAX_TOKENS = 16
SLACK_MS = 25.0  # scheduling noise on a shared 2-core machine (client and server in one process)


@pytest.fixture(scope="module")
def stub():
    with serve_stub(TIMED) as s:
        yield s


def _cfg(url: str, **kw) -> BenchConfig:
    kw = {"num_prompts": 6, "concurrency": 2, "max_tokens": MAX_TOKENS, "progress": False} | {
        "warmup": 0,
        **kw,
    }
    return BenchConfig(url=url, **kw)


def _run(cfg: BenchConfig, **kw):
    return asyncio.run(run_benchmark(cfg, **kw))


# --- pure metrics ------------------------------------------------------------------------------


def _random_records(rng: np.random.Generator, n: int) -> list[RequestRecord]:
    recs = []
    for i in range(n):
        gaps = rng.exponential(0.01, size=int(rng.integers(0, 6)))
        ttft = float(rng.uniform(0.01, 0.2))
        times = list(ttft + np.concatenate([[0.0], np.cumsum(gaps)]))
        e2e = times[-1] + 0.001
        tokens = int(rng.integers(1, 20))
        recs.append(
            RequestRecord(i, ok=True, status=200, chunk_times=times, output_tokens=tokens, e2e=e2e)
        )
    return recs


def test_summarize_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    ok = _random_records(rng, 37)
    failed = [RequestRecord(100, status=500, error="boom"), RequestRecord(101, error="refused")]
    cancelled = [RequestRecord(102, cancelled=True, error="cancelled", chunk_times=[0.5])]
    s = summarize(ok + failed + cancelled, duration=2.5)
    ttft = np.array([r.chunk_times[0] for r in ok]) * 1e3
    itl = np.concatenate([np.diff(r.chunk_times) for r in ok]) * 1e3
    e2e = np.array([r.e2e for r in ok]) * 1e3
    tpot = np.array(
        [(r.e2e - r.chunk_times[0]) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    )
    for name, ref in (("ttft", ttft), ("itl", itl), ("e2e", e2e), ("tpot", tpot * 1e3)):
        assert s[f"{name}_mean_ms"] == pytest.approx(ref.mean(), rel=1e-12)
        assert s[f"{name}_p50_ms"] == pytest.approx(np.median(ref), rel=1e-12)
        assert s[f"{name}_p99_ms"] == pytest.approx(np.percentile(ref, 99), rel=1e-12)
    assert (s["issued"], s["completed"], s["errors"], s["cancelled"]) == (40, 37, 2, 1)
    assert s["output_tok_s"] == pytest.approx(sum(r.output_tokens for r in ok) / 2.5)
    assert s["request_throughput"] == pytest.approx(37 / 2.5)
    assert s["error_status"] == {"500": 1, "exception": 1}
    assert s["error_samples"] == ["boom", "refused"]
    assert s["goodput_req_s"] is None and s["input_tok_s"] is None


def test_summarize_goodput_counts_requests_meeting_both_bounds():
    def rec(i, ttft, tpot, tokens=11):
        e2e = ttft + tpot * (tokens - 1)
        return RequestRecord(i, ok=True, chunk_times=[ttft], output_tokens=tokens, e2e=e2e)

    recs = [rec(0, 0.05, 0.010), rec(1, 0.15, 0.010), rec(2, 0.05, 0.030), rec(3, 0.09, 0.019)]
    recs.append(rec(4, 0.05, 0.0, tokens=1))  # one token: no TPOT, meets the TPOT bound
    s = summarize(recs, 2.0, SLO(ttft_ms=100, tpot_ms=20))
    assert s["goodput_req_s"] == pytest.approx(3 / 2.0)  # requests 0, 3, 4
    assert summarize(recs, 2.0, SLO(ttft_ms=100))["goodput_req_s"] == pytest.approx(4 / 2.0)
    empty = summarize([], 1.0)
    assert empty["ttft_p50_ms"] is None and empty["completed"] == 0
    with pytest.raises(ValueError, match="duration"):
        summarize(recs, 0.0)


def _page(draft, acc, count, total):
    lines = [
        f'dspark_spec_draft_tokens_total{{position="{i + 1}"}} {v}' for i, v in enumerate(draft)
    ]
    lines += [
        f'dspark_spec_accepted_tokens_total{{position="{i + 1}"}} {v}' for i, v in enumerate(acc)
    ]
    lines += ["# TYPE dspark_spec_verify_length histogram"]
    lines += [f"dspark_spec_verify_length_count {count}", f"dspark_spec_verify_length_sum {total}"]
    return parse_metrics("\n".join(["# TYPE dspark_spec_draft_tokens counter", *lines]) + "\n")


def test_spec_stats_diffs_counters():
    before = _page([10, 10, 10], [9, 5, 1], 10, 30)
    after = _page([110, 70, 10], [89, 35, 1], 110, 230)
    s = spec_stats(before, after)
    assert s["per_position_acceptance"] == [pytest.approx(0.8), pytest.approx(0.5), None]
    assert s["mean_acceptance_length"] == pytest.approx(1 + (80 + 30) / 100)
    assert s["mean_verify_length"] == pytest.approx(2.0)
    assert s["draft_acceptance_rate"] == pytest.approx(110 / 160)
    assert (s["draft_tokens"], s["accepted_tokens"], s["verify_steps"]) == (160, 110, 100)


def test_spec_stats_is_null_without_metrics_or_after_a_reset():
    page = _page([10], [5], 10, 10)
    peer = parse_metrics("# TYPE http_requests_total counter\nhttp_requests_total 3\n")
    for before, after in ((None, page), (page, None), (peer, peer), (page, _page([5], [1], 2, 2))):
        s = spec_stats(before, after)
        assert s["mean_acceptance_length"] is None and s["per_position_acceptance"] is None
    idle = spec_stats(page, page)  # nothing verified in the run
    assert idle["mean_acceptance_length"] is None and idle["verify_steps"] == 0


# --- prompts and settings ----------------------------------------------------------------------


def test_load_bench_prompts_reads_both_formats_and_cycles(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"turns": ["hello", "second"]}\n\n{"input_ids": [3, 4, 5]}\n')
    got = load_bench_prompts(str(f), 5, seed=1)
    assert sorted(map(str, got[:2])) == sorted(["hello", "[3, 4, 5]"])
    assert got[2:4] == got[:2] and got[4] == got[0]
    assert load_bench_prompts(str(f), 5, seed=1) == got  # seeded
    with pytest.raises(ValueError, match="chat endpoint"):
        load_bench_prompts(str(f), 2, chat=True)
    zoo = load_bench_prompts(None, 48)
    assert len(set(zoo)) == 48 and all(isinstance(p, str) and p for p in zoo)  # 16 code + 32 prose


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", "embeddings"),
        ("num_prompts", 0),
        ("concurrency", 1.5),
        ("max_tokens", -1),
        ("request_rate", 0.0),
        ("duration_limit", -1.0),
        ("slo_tpot_ms", 0),
        ("timeout", "10"),
        ("temperature", -0.5),
        ("warmup", -1),
    ],
)
def test_bench_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        BenchConfig(**{field: value})


def test_bench_config_base_url():
    assert BenchConfig(url="http://h:1/v1/").base_url == "http://h:1"
    assert BenchConfig(url="http://h:1").base_url == "http://h:1"


# --- against the stub server -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_bench_latencies_match_the_stub(stub, endpoint):
    r = _run(_cfg(stub.url, endpoint=endpoint, concurrency=1, num_prompts=5))
    s = r.summary
    assert (s["completed"], s["errors"], s["total_output_tokens"]) == (5, 0, 5 * MAX_TOKENS)
    ttft, itl, e2e = 1e3 * TIMED.ttft_s, 1e3 * TIMED.chunk_interval_s, 110.0
    assert ttft <= s["ttft_p50_ms"] <= ttft + SLACK_MS
    assert itl - 3 <= s["itl_p50_ms"] <= itl + 3
    assert s["tpot_p50_ms"] == pytest.approx(70 / 15, abs=1.0)
    assert e2e <= s["e2e_p50_ms"] <= e2e + SLACK_MS
    assert s["input_tok_s"] == pytest.approx(5 * 7 / s["duration_s"])  # usage.prompt_tokens
    body = stub.state.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == MODEL and "ignore_eos" not in body
    assert ("messages" in body) == (endpoint == "chat")


def test_bench_counts_chunks_without_usage():
    with serve_stub(StubConfig(ttft_s=0.04, chunk_interval_s=0.01, send_usage=False)) as s:
        r = _run(_cfg(s.url, concurrency=1, num_prompts=3, ignore_eos=True))
        assert s.state.requests[0]["ignore_eos"] is True
    assert r.summary["total_output_tokens"] == 3 * 8  # 8 chunks of 2 tokens, counted per chunk
    assert r.summary["tpot_p50_ms"] == pytest.approx(70 / 7, abs=2.0)
    assert r.summary["input_tok_s"] is None


def test_bench_respects_concurrency_and_reports_throughput():
    with serve_stub(TIMED) as s:
        r = _run(_cfg(s.url, concurrency=3, num_prompts=9))
        assert s.state.max_in_flight == 3
    # three waves of ~110 ms each (one request at a time would take 0.99 s)
    assert 0.33 <= r.summary["duration_s"] < 0.6
    assert r.summary["output_tok_s"] == pytest.approx(9 * 16 / r.summary["duration_s"])


def test_bench_poisson_arrivals_follow_the_seeded_draws(stub):
    rate, n = 20.0, 8
    r = _run(_cfg(stub.url, concurrency=n, num_prompts=n, request_rate=rate, seed=0))
    draws = random.Random(0)
    expected = np.concatenate([[0.0], np.cumsum([draws.expovariate(rate) for _ in range(n - 1)])])
    starts = np.array(sorted(rec.start for rec in r.records))
    assert expected[-1] > 0.2  # the check below tells these arrivals from "all at once"
    assert np.abs((starts - starts[0]) - expected).max() < 0.04


def test_bench_reads_acceptance_from_metrics(stub):
    r = _run(_cfg(stub.url, num_prompts=4))
    assert r.spec["per_position_acceptance"] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert r.spec["mean_acceptance_length"] == pytest.approx(1 + 20 / 10)
    assert r.spec["draft_tokens"] == 4 * 40 and r.spec["mean_verify_length"] == 4.0
    assert (r.mode, r.k) == ("fixed", 2)  # the server's current setting
    with serve_stub(StubConfig(metrics=False, speculation=False)) as peer:
        r = _run(_cfg(peer.url, num_prompts=2))
    assert r.spec["mean_acceptance_length"] is None and (r.mode, r.k) == ("server", None)


def test_bench_warmup_is_sent_but_not_measured():
    with serve_stub(StubConfig(ttft_s=0.005, chunk_interval_s=0.002)) as s:
        r = _run(_cfg(s.url, num_prompts=3, warmup=2))
        assert len(s.state.requests) == 3 + 2
    assert (r.summary["issued"], r.summary["completed"]) == (3, 3)
    assert r.spec["draft_tokens"] == 3 * 40  # the /metrics baseline is read after the warm-up


def test_bench_counts_errors_instead_of_raising():
    cfg = StubConfig(ttft_s=0.005, chunk_interval_s=0.002, fail_every=4, fail_statuses=(500, 503))
    with serve_stub(cfg) as s:
        r = _run(_cfg(s.url, num_prompts=12, concurrency=1))
    assert (r.summary["completed"], r.summary["errors"]) == (6, 6)
    assert r.summary["error_status"] == {"500": 3, "503": 3}
    assert any("stub failure 503" in m for m in r.summary["error_samples"])
    assert r.summary["total_output_tokens"] == 6 * MAX_TOKENS


@pytest.mark.parametrize(
    ("stub_cfg", "message"),
    [
        (StubConfig(ttft_s=0.002, error_after_chunks=2), "stub engine failure"),
        (StubConfig(ttft_s=0.002, send_done=False), "without 'data: [DONE]'"),
        (StubConfig(ttft_s=3.0), "ReadTimeout"),  # nothing within the read timeout
    ],
)
def test_bench_counts_broken_streams(stub_cfg, message):
    with serve_stub(stub_cfg) as s:
        t0 = time.perf_counter()
        r = _run(_cfg(s.url, num_prompts=2, concurrency=2, timeout=0.3))
        assert time.perf_counter() - t0 < 1.5
    assert (r.summary["completed"], r.summary["errors"], r.summary["cancelled"]) == (0, 2, 0)
    assert r.summary["error_status"] == {"200": 2}  # the failure came after the 200 header
    assert any(message in m for m in r.summary["error_samples"])


def test_bench_counts_refused_connections():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = _run(_cfg(f"http://127.0.0.1:{port}", model="m", num_prompts=3, timeout=2.0))
    assert (r.summary["errors"], r.summary["error_status"]) == (3, {"exception": 3})
    assert r.mode == "server"


def test_bench_duration_limit_stops_a_stream_that_never_ends():
    with serve_stub(StubConfig(hang=True, chunk_interval_s=0.02)) as s:
        t0 = time.perf_counter()
        # the warm-up request never ends either: it is cut at the limit too
        r = _run(_cfg(s.url, num_prompts=5, concurrency=2, duration_limit=0.4, warmup=1))
        took = time.perf_counter() - t0
        deadline = time.monotonic() + 3
        while s.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.state.in_flight == 0 and s.state.disconnected == 3  # the server saw the cancels
    assert took < 2.0 and 0.4 <= r.summary["duration_s"] < 0.6
    assert (r.summary["issued"], r.summary["cancelled"], r.summary["completed"]) == (2, 2, 0)
    assert r.summary["errors"] == 0 and all(rec.chunk_times for rec in r.records)


def test_sweep_sets_every_mode_and_restores_the_setting():
    with serve_stub(StubConfig(ttft_s=0.005, chunk_interval_s=0.002, max_k=2)) as s:
        cfg = _cfg(s.url, num_prompts=3, max_tokens=4)
        runs, skipped = asyncio.run(run_sweep(cfg, [1, 3]))
        modes = s.state.modes_set
    plan = [("none", None), ("fixed", 1), ("fixed", 2), ("scheduler", None)]
    assert modes == [*plan, *plan, ("fixed", 2)] and skipped == []
    # concurrency-major: every mode at one concurrency back to back
    assert [(r.mode, r.k, r.concurrency) for r in runs] == [
        (m, k, c) for c in (1, 3) for m, k in plan
    ]
    assert all(r.summary["completed"] == 3 for r in runs)
    table = format_table(runs).splitlines()
    assert len(table) == 2 + len(runs) and "| scheduler | - | 3 |" in table[-1]


def test_sweep_skips_refused_modes_and_handles_peer_servers():
    with serve_stub(StubConfig(ttft_s=0.005, max_k=3, refuse_modes=("scheduler",))) as s:
        cfg = _cfg(s.url, num_prompts=2, max_tokens=4)
        runs, skipped = asyncio.run(run_sweep(cfg, [2], ks=[3, 5]))  # K=5 > max_k
    assert [(r.mode, r.k) for r in runs] == [("none", None), ("fixed", 3)]
    assert [(x["mode"], x["k"]) for x in skipped] == [("fixed", 5), ("scheduler", None)]
    assert skipped[0]["reason"] == "HTTP 400: k: expected 1..3, got 5"
    assert skipped[1]["reason"] == "HTTP 400: mode 'scheduler' needs a drafter"
    with serve_stub(StubConfig(ttft_s=0.005, speculation=False)) as peer:
        runs, _ = asyncio.run(run_sweep(_cfg(peer.url, num_prompts=2, max_tokens=4), [1, 2]))
        assert peer.state.modes_set == []
    assert [(r.mode, r.k, r.concurrency) for r in runs] == [
        ("server", None, 1),
        ("server", None, 2),
    ]


# --- the command line --------------------------------------------------------------------------


def test_cli_bench_serve_sweep_writes_json_and_png(tmp_path, capsys):
    out, png = tmp_path / "r" / "sweep.json", tmp_path / "sweep.png"
    with serve_stub(StubConfig(ttft_s=0.005, chunk_interval_s=0.002, max_k=2)) as s:
        argv = ["bench", "serve", "--url", s.url, "--sweep", "--sweep-k", "2", "--concurrency"]
        argv += ["1,2", "--num-prompts", "2", "--max-tokens", "4", "--slo-ttft-ms", "1000"]
        argv += ["--json", str(out), "--plot", str(png), "--no-progress", "--set", "warmup=0"]
        assert main([*argv, "--set", "timeout=5"]) == 0
        plan = [("none", None), ("fixed", 2), ("scheduler", None)]
        assert s.state.modes_set == [*plan, *plan, ("fixed", 2)]  # a pass per concurrency, restored
    doc = json.loads(out.read_text())
    assert [(r["mode"], r["k"], r["concurrency"]) for r in doc["runs"]] == [
        (m, k, c) for c in (1, 2) for m, k in plan
    ]
    for r in doc["runs"]:
        for key in ("output_tok_s", "tpot_p50_ms", "ttft_p50_ms", "errors", "goodput_req_s"):
            assert isinstance(r[key], int | float) and math.isfinite(r[key])
        assert r["per_position_acceptance"] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert doc["config"]["timeout"] == 5 and doc["config"]["request_rate"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.count("| fixed |") == 2 and f"json: {out}" in printed


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "two"], "--concurrency"),
        (["--sweep-k", "0,2"], "--sweep-k"),
        (["--num-prompts", "0"], "num_prompts"),
        (["--set", "bogus=1"], "bogus"),
    ],
)
def test_cli_bench_serve_rejects_bad_settings(argv, match):
    with pytest.raises(SystemExit, match=match):
        main(["bench", "serve", "--url", "http://127.0.0.1:9", "--no-progress", *argv])


def test_cli_bench_serve_unreachable_server_names_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SystemExit, match="v1/models"):
        main(
            [
                "bench",
                "serve",
                "--url",
                f"http://127.0.0.1:{port}",
                "--no-progress",
                "--set",
                "timeout=2",
            ]
        )
