"""The OpenAI-compatible HTTP API of ``dspark serve`` (FastAPI), over an :class:`AsyncEngine`.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (the model's chat template),
both with SSE streaming (one chunk per engine step; a speculative step can carry several
tokens); ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus) and dspark's
``GET|PUT /v1/dspark/speculation`` (switch none/fixed K/scheduler between benchmark runs).
Errors are ``{"error": {"message", "type", "param", "code"}}``: 400 for bad requests, 404 for
an unknown model, 409 for a setting change while busy, 503 when the queue is full or the server
is draining.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dspark.sampling_params import SamplingParams
from dspark.serve.engine_loop import AsyncEngine, EngineDead, QueueFull
from dspark.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    SpeculationSetting,
    validation_message,
)
from dspark.serve.text import IncrementalText

__all__ = ["build_app"]


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = ""):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or {400: "invalid_request_error", 404: "not_found_error"}.get(
            status, "server_error"
        )


def _error(status: int, message: str, param: str | None = None, kind: str = "") -> JSONResponse:
    e = APIError(status, message, param, kind)
    body = {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": status}}
    return JSONResponse(body, status_code=status)


def build_app(
    engine: AsyncEngine,
    tokenizer: Any,
    *,
    model_name: str,
    drain_timeout: float = 30.0,
) -> FastAPI:
    """The FastAPI app serving ``engine``; starting it starts the engine thread, stopping it
    drains running requests (at most ``drain_timeout`` s) and stops the thread."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await engine.drain(drain_timeout)
        engine.stop()

    app = FastAPI(title="dspark", lifespan=lifespan)
    app.state.engine = engine
    eos = tokenizer.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    max_len = engine.engine.max_model_len

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msg, param = validation_message(list(exc.errors()))
        return _error(400, msg, param)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.param, exc.kind)

    @app.get("/health")
    async def health() -> JSONResponse:
        if engine.draining or not engine.alive:
            status = "draining" if engine.draining else "engine stopped"
            return JSONResponse({"status": status}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        card = {
            "id": model_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "dspark",
            "max_model_len": max_len,
        }
        return JSONResponse({"object": "list", "data": [card]})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type="text/plain; version=0.0.4")

    def _setting() -> dict[str, Any]:
        e = engine.engine
        return {"mode": e.speculation, "k": e.k or None, "max_k": e.max_k}

    @app.get("/v1/dspark/speculation")
    async def get_speculation() -> JSONResponse:
        return JSONResponse(_setting())

    @app.put("/v1/dspark/speculation")
    async def put_speculation(body: SpeculationSetting) -> JSONResponse:
        try:
            await engine.call(lambda: engine.engine.set_speculation(body.mode, body.k))
        except RuntimeError as e:
            raise APIError(409, str(e), "mode", "conflict_error") from e
        except ValueError as e:
            raise APIError(400, str(e), "k" if "num_draft_tokens" in str(e) else "mode") from e
        return JSONResponse(_setting())

    # --- generation ------------------------------------------------------------------------
    def _check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise APIError(404, f"model: this server serves {model_name!r}, got {name!r}", "model")

    def _params(body: Any, max_tokens: int | None) -> SamplingParams:
        return SamplingParams(
            temperature=body.temperature,
            top_k=max(body.top_k, 0),
            top_p=body.top_p,
            min_p=body.min_p,
            seed=None if body.seed is None else body.seed % 2**62,
            max_tokens=max_tokens,
            stop=() if body.ignore_eos else tuple(eos_ids),
        )

    async def _start(body: Any, prompt_ids: list[int], max_tokens: int | None) -> str:
        slo = None if body.tpot_slo_ms is None else body.tpot_slo_ms / 1000.0
        lp = getattr(body, "logprobs", None)
        want_lp = lp is not None and lp is not False
        try:
            return await engine.submit(
                prompt_ids, _params(body, max_tokens), tpot_slo=slo, logprobs=want_lp
            )
        except QueueFull as e:
            raise APIError(503, str(e), None, "overloaded_error") from e
        except EngineDead as e:
            raise APIError(503, str(e), None, "server_error") from e
        except ValueError as e:  # the engine owns the checks; its field is our "prompt"
            msg = str(e).replace("prompt_token_ids", "prompt", 1)
            raise APIError(400, msg, msg.split(":", 1)[0]) from e

    def _prompt_ids(prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return list(tokenizer(prompt, add_special_tokens=False).input_ids)
        return list(prompt)  # ids are checked by the engine

    def _chat_ids(body: ChatCompletionRequest) -> list[int]:
        try:
            msgs = [{"role": m.role, "content": m.text()} for m in body.messages]
        except ValueError as e:
            raise APIError(400, f"messages: {e}", "messages") from e
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        _check_model(body.model)
        rid = await _start(body, _prompt_ids(body.prompt), body.max_tokens)
        return await _respond(body, rid, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request) -> Response:
        _check_model(body.model)
        max_tokens = body.max_completion_tokens or body.max_tokens
        rid = await _start(body, _chat_ids(body), max_tokens)
        return await _respond(body, rid, request, chat=True)

    async def _respond(body: Any, rid: str, request: Request, *, chat: bool) -> Response:
        oid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        text = IncrementalText(tokenizer, body.stop)
        want_lp = (body.logprobs is not None) if not chat else bool(body.logprobs)
        kind = "chat.completion" if chat else "text_completion"

        def choice(delta: str, lps: list, reason: str | None, *, final: bool) -> dict[str, Any]:
            c: dict[str, Any] = {"index": 0, "finish_reason": reason}
            if chat:
                msg = {"role": "assistant", "content": delta}
                c["message" if final else "delta"] = msg
                c["logprobs"] = _chat_logprobs(lps) if want_lp else None
            else:
                c["text"] = delta
                c["logprobs"] = _completion_logprobs(lps) if want_lp else None
            return c

        def usage(out: Any) -> dict[str, int]:
            return {
                "prompt_tokens": out.num_prompt_tokens,
                "completion_tokens": text.num_tokens,
                "total_tokens": out.num_prompt_tokens + text.num_tokens,
            }

        def step(out: Any) -> tuple[str, list, str | None]:
            delta, lps, stopped = text.add(out.new_token_ids, out.logprobs, final=out.finished)
            if stopped and not out.finished:
                engine.abort(rid, "stop")  # a stop string: the engine stops generating now
            reason = "stop" if stopped else (out.finish_reason.value if out.finished else None)
            return delta, lps, reason

        outputs = engine.stream(rid)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            async def events() -> AsyncIterator[str]:
                chunk_kind = "chat.completion.chunk" if chat else "text_completion"
                head = {"id": oid, "object": chunk_kind, "created": created, "model": model_name}
                last = None
                try:
                    if chat:
                        first = {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        yield f"data: {json.dumps({**head, 'choices': [first]})}\n\n"
                    async for out in outputs:
                        last = out
                        delta, lps, reason = step(out)
                        if delta or reason or lps:
                            c = choice(delta, lps, reason, final=False)
                            if chat:
                                c["delta"] = {"content": delta} if delta else {}
                            yield f"data: {json.dumps({**head, 'choices': [c]})}\n\n"
                        if reason is not None:
                            break
                    if include_usage and last is not None:
                        tail = {**head, "choices": [], "usage": usage(last)}
                        yield f"data: {json.dumps(tail)}\n\n"
                except EngineDead as e:
                    err = {"error": {"message": str(e), "type": "server_error", "code": 500}}
                    yield f"data: {json.dumps(err)}\n\n"
                finally:
                    await outputs.aclose()  # aborts the request if it did not finish
                yield "data: [DONE]\n\n"

            return StreamingResponse(
                events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )

        parts: list[str] = []
        lps_all: list = []
        reason, last = None, None
        try:
            it = outputs.__aiter__()
            while reason is None:
                task = asyncio.ensure_future(it.__anext__())
                while not task.done():
                    done, _ = await asyncio.wait({task}, timeout=0.5)
                    if not done and await request.is_disconnected():
                        task.cancel()
                        raise asyncio.CancelledError
                try:
                    last = task.result()
                except StopAsyncIteration:
                    break
                delta, lps, reason = step(last)
                parts.append(delta)
                lps_all += lps
        except EngineDead as e:
            raise APIError(500, str(e)) from e
        finally:
            await outputs.aclose()
        body_out = {
            "id": oid,
            "object": kind,
            "created": created,
            "model": model_name,
            "choices": [choice("".join(parts), lps_all, reason, final=True)],
            "usage": usage(last) if last is not None else None,
        }
        return JSONResponse(body_out)

    return app


def _completion_logprobs(lps: list[tuple[str, float, int]]) -> dict[str, Any]:
    return {
        "tokens": [t for t, _, _ in lps],
        "token_logprobs": [lp for _, lp, _ in lps],
        "top_logprobs": [{t: lp} for t, lp, _ in lps],
        "text_offset": [off for _, _, off in lps],
    }


def _chat_logprobs(lps: list[tuple[str, float, int]]) -> dict[str, Any]:
    content = []
    for t, lp, _ in lps:
        b = list(t.encode("utf-8"))
        content.append(
            {
                "token": t,
                "logprob": lp,
                "bytes": b,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": b}],
            }
        )
    return {"content": content}
