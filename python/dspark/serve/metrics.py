"""Prometheus metrics of ``dspark serve`` (one registry per server, prometheus-client).

Names are the contract ``dspark bench serve`` reads (per-position acceptance is
``dspark_spec_accepted_tokens_total / dspark_spec_draft_tokens_total`` per ``position``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["ServerMetrics"]

_STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class ServerMetrics:
    """The server's counters, gauges and histograms, updated by the engine loop."""

    def __init__(self, max_k: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu seconds, fds
        self.requests = Counter(
            "dspark_requests", "Finished requests", ["finish_reason"], registry=r
        )
        self.rejected = Counter(
            "dspark_requests_rejected", "Requests refused (queue full, draining)", registry=r
        )
        self.running = Gauge("dspark_requests_running", "Requests running", registry=r)
        self.waiting = Gauge("dspark_requests_waiting", "Requests waiting", registry=r)
        self.pages_used = Gauge("dspark_kv_pages_used", "KV cache pages in use", registry=r)
        self.pages_total = Gauge("dspark_kv_pages_total", "KV cache pages in the pool", registry=r)
        self.step_seconds = Histogram(
            "dspark_step_seconds", "Engine step time", buckets=_STEP_BUCKETS, registry=r
        )
        self.step_tokens = Histogram(
            "dspark_step_tokens", "Tokens per packed forward", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter("dspark_prompt_tokens", "Prompt tokens", registry=r)
        self.generation_tokens = Counter("dspark_generation_tokens", "Generated tokens", registry=r)
        self.drafted = Counter(
            "dspark_spec_draft_tokens",
            "Draft tokens tested by verification (every earlier draft accepted), by position",
            ["position"],
            registry=r,
        )
        self.accepted = Counter(
            "dspark_spec_accepted_tokens",
            "Draft tokens accepted, by position",
            ["position"],
            registry=r,
        )
        self.verify_length = Histogram(
            "dspark_spec_verify_length",
            "Draft tokens verified per request and step (the chosen length)",
            buckets=tuple(range(max(max_k, 1) + 1)),
            registry=r,
        )
        self.ttft = Histogram(
            "dspark_time_to_first_token_seconds",
            "Time to first token",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.e2e = Histogram(
            "dspark_request_seconds",
            "End-to-end request time",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        # Create every position's series up front so a scrape before any draft sees zeros.
        self._pos = [str(i + 1) for i in range(max_k)]
        for p in self._pos:
            self.drafted.labels(position=p)
            self.accepted.labels(position=p)

    def observe_step(self, last_step: dict[str, Any]) -> None:
        """Record one engine step (``Engine.last_step``)."""
        if not last_step:
            return
        self.step_seconds.observe(last_step["seconds"])
        self.step_tokens.observe(last_step["tokens"])
        for k, a in zip(last_step.get("lengths", []), last_step.get("accepted", []), strict=False):
            self.verify_length.observe(k)
            # Position p is tested only when every draft before it was accepted, so
            # accepted / drafted per position is the conditional acceptance rate.
            for p in range(min(k, a + 1)):
                label = str(p + 1)
                self.drafted.labels(position=label).inc()
                if p < a:
                    self.accepted.labels(position=label).inc()

    def observe_engine(self, engine: Any) -> None:
        cache = engine.runner.cache
        self.running.set(len(engine.running))
        self.waiting.set(len(engine.waiting))
        self.pages_total.set(cache.num_pages)
        self.pages_used.set(cache.num_pages - cache.num_free_pages)

    def render(self) -> bytes:
        return generate_latest(self.registry)
