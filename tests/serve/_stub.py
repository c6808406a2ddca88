"""A stub OpenAI-compatible server with known latencies, for tests of HTTP clients.

``with serve_stub(StubConfig(...)) as stub:`` runs a FastAPI app under uvicorn in a background
thread on 127.0.0.1 (port 0, read back from the bound socket, by dspark's ``ServerThread``);
``stub.url`` is its root and ``stub.state`` what it saw. Streams follow the serve contract: ``ttft_s`` after the request
the first chunk, then one chunk every ``chunk_interval_s``, each carrying ``tokens_per_chunk``
tokens (scheduled on absolute times, so sleeps do not drift), a usage chunk, ``[DONE]``.

Every completed stream adds ``draft_per_request[i]`` / ``accepted_per_request[i]`` to the
Prometheus counters of position i + 1 and ``verify_steps_per_request`` observations of
``verify_k`` to ``dspark_spec_verify_length`` (the counters start at nonzero values, so a
client must diff them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dspark.serve.launch import ServerThread

MODEL = "stub-model"


@dataclass
class StubConfig:
    ttft_s: float = 0.02
    chunk_interval_s: float = 0.005
    tokens_per_chunk: int = 2
    send_usage: bool = True
    # request n (0-based arrival order) fails with fail_statuses[j] when n % fail_every == j
    fail_every: int = 0
    fail_statuses: tuple[int, ...] = ()
    hang: bool = False  # stream chunks forever (never finishes)
    error_after_chunks: int | None = None  # then an in-stream {"error": ...} chunk and the end
    send_done: bool = True  # False: the stream just stops after the usage chunk
    speculation: bool = True  # serve /v1/dspark/speculation (else 404 like a peer server)
    metrics: bool = True
    max_k: int = 4
    refuse_modes: tuple[str, ...] = ()  # PUT answers 400 for these modes
    draft_per_request: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0)
    accepted_per_request: tuple[float, ...] = (8.0, 6.0, 4.0, 2.0)
    verify_steps_per_request: int = 10
    verify_k: float = 4.0


@dataclass
class StubState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    modes_set: list[tuple[str, int | None]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    completed: int = 0
    disconnected: int = 0
    setting: dict[str, Any] = field(default_factory=lambda: {"mode": "fixed", "k": 2})


def make_app(cfg: StubConfig, state: StubState) -> FastAPI:
    app = FastAPI()
    reg = CollectorRegistry()
    draft = Counter("dspark_spec_draft_tokens", "d", ["position"], registry=reg)
    accepted = Counter("dspark_spec_accepted_tokens", "a", ["position"], registry=reg)
    verify = Histogram("dspark_spec_verify_length", "k", buckets=(1, 2, 4, 8), registry=reg)
    for i in range(len(cfg.draft_per_request)):  # nonzero starting values
        draft.labels(position=str(i + 1)).inc(100)
        accepted.labels(position=str(i + 1)).inc(50)
    verify.observe(1.0)

    def count_spec() -> None:
        for i, (d, a) in enumerate(
            zip(cfg.draft_per_request, cfg.accepted_per_request, strict=True)
        ):
            draft.labels(position=str(i + 1)).inc(d)
            accepted.labels(position=str(i + 1)).inc(a)
        for _ in range(cfg.verify_steps_per_request):
            verify.observe(cfg.verify_k)

    def error(status: int, message: str) -> JSONResponse:
        body = {"error": {"message": message, "type": "stub", "param": None, "code": status}}
        return JSONResponse(body, status_code=status)

    async def stream(body: dict[str, Any], chat: bool) -> AsyncIterator[bytes]:
        t0 = time.perf_counter()
        n_tokens = int(body.get("max_tokens", 16))
        n_chunks = math.inf if cfg.hang else math.ceil(n_tokens / cfg.tokens_per_chunk)
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        finished = False
        try:
            if chat:  # a role-only first chunk, as OpenAI sends: no tokens, no TTFT
                yield _sse({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            i = 0
            while i < n_chunks:
                wake = t0 + cfg.ttft_s + i * cfg.chunk_interval_s
                await asyncio.sleep(max(0.0, wake - time.perf_counter()))
                text = "ab" * cfg.tokens_per_chunk
                choice = {"index": 0, "finish_reason": None}
                choice.update({"delta": {"content": text}} if chat else {"text": text})
                yield _sse({"object": "stub.chunk", "choices": [choice]})
                i += 1
                if i == cfg.error_after_chunks:
                    yield _sse({"error": {"message": "stub engine failure", "code": 500}})
                    return
            last = {"index": 0, "finish_reason": "length"}
            last.update({"delta": {}} if chat else {"text": ""})
            yield _sse({"choices": [last]})
            if cfg.send_usage:
                usage = {"prompt_tokens": 7, "completion_tokens": n_tokens}
                yield _sse({"choices": [], "usage": usage})
            if cfg.send_done:
                yield b"data: [DONE]\n\n"
            finished = True
            state.completed += 1
            count_spec()
        finally:
            state.in_flight -= 1
            state.disconnected += not finished

    async def complete(request: Request, chat: bool) -> Any:
        body = await request.json()
        n = len(state.requests)
        state.requests.append(body)
        if cfg.fail_every and n % cfg.fail_every < len(cfg.fail_statuses):
            status = cfg.fail_statuses[n % cfg.fail_every]
            return error(status, f"stub failure {status} for request {n}")
        return StreamingResponse(stream(body, chat), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await complete(request, chat=True)

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.get("/metrics")
    async def metrics() -> Any:
        if not cfg.metrics:
            return PlainTextResponse("not found", status_code=404)
        return PlainTextResponse(generate_latest(reg).decode())

    @app.get("/v1/dspark/speculation")
    async def get_spec() -> Any:
        if not cfg.speculation:
            return error(404, "not found")
        return {**state.setting, "max_k": cfg.max_k}

    @app.put("/v1/dspark/speculation")
    async def put_spec(request: Request) -> Any:
        if not cfg.speculation:
            return error(404, "not found")
        body = await request.json()
        mode, k = body.get("mode"), body.get("k")
        if mode in cfg.refuse_modes:
            return error(400, f"mode {mode!r} needs a drafter")
        if mode == "fixed" and not (isinstance(k, int) and 1 <= k <= cfg.max_k):
            return error(400, f"k: expected 1..{cfg.max_k}, got {k!r}")
        if state.in_flight:
            return error(409, "requests in flight")
        state.modes_set.append((mode, k))
        state.setting = {"mode": mode, "k": k}
        return {**state.setting, "max_k": cfg.max_k}

    return app


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


@dataclass
class Stub:
    url: str
    state: StubState


@contextlib.contextmanager
def serve_stub(cfg: StubConfig | None = None) -> Iterator[Stub]:
    """Run the stub on a :class:`~dspark.serve.launch.ServerThread` for the ``with`` block."""
    state = StubState()
    app = make_app(cfg or StubConfig(), state)
    with ServerThread(app, lifespan="off", ws="none", timeout_graceful_shutdown=1) as srv:
        yield Stub(srv.url, state)
