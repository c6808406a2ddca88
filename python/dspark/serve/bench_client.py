"""The HTTP side of ``dspark bench serve``: one streamed request, and the server's extras.

:func:`send` streams one request (SSE, ``stream_options.include_usage``) into a
:class:`~dspark.serve.bench_stats.RequestRecord`, turning every failure (HTTP status, in-stream
error, a stream without ``[DONE]``, timeouts, malformed chunks) into ``rec.error``. The other
helpers read ``/v1/models``, ``/metrics`` and ``/v1/dspark/speculation``; each returns None
(or a reason) where a peer server lacks the endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import httpx

from dspark.serve.bench_stats import RequestRecord, parse_metrics

if TYPE_CHECKING:
    from dspark.serve.bench import BenchConfig, Prompt

__all__ = [
    "first_model",
    "get_speculation",
    "open_client",
    "request_body",
    "scrape_metrics",
    "send",
    "set_speculation",
]


def open_client(cfg: BenchConfig, max_concurrency: int) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    return httpx.AsyncClient(
        base_url=cfg.base_url,
        headers=headers,
        timeout=httpx.Timeout(cfg.timeout),
        limits=httpx.Limits(max_connections=max_concurrency + 2),
    )


async def first_model(client: httpx.AsyncClient) -> str:
    try:
        r = await client.get("/v1/models")
        r.raise_for_status()
        return str(r.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
        raise RuntimeError(
            f"url: could not read a model id from {client.base_url}v1/models "
            f"({type(e).__name__}: {e}); is the server up? --model skips the lookup"
        ) from None


async def get_speculation(client: httpx.AsyncClient) -> dict[str, Any] | None:
    """``GET /v1/dspark/speculation``, or None when the server has no such endpoint."""
    try:
        r = await client.get("/v1/dspark/speculation")
        return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


async def set_speculation(
    client: httpx.AsyncClient, mode: str, k: int | None, wait: float = 10.0
) -> str | None:
    """PUT a speculation setting; None on success, else the reason. Retries on 409."""
    deadline = time.monotonic() + wait
    while True:
        try:
            r = await client.put("/v1/dspark/speculation", json={"mode": mode, "k": k})
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        if r.status_code == 200:
            return None
        if r.status_code != 409 or time.monotonic() > deadline:
            return f"HTTP {r.status_code}: {_error_message(r.content)}"
        await asyncio.sleep(0.05)  # the previous run's cancelled requests are still draining


async def scrape_metrics(client: httpx.AsyncClient) -> dict[Any, float] | None:
    try:
        r = await client.get("/metrics")
        return parse_metrics(r.text) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _error_message(body: bytes) -> str:
    try:
        err = json.loads(body)["error"]
        return str(err["message"] if isinstance(err, dict) else err)
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:200]


def request_body(cfg: BenchConfig, model: str, prompt: Prompt) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if cfg.endpoint == "chat":
        out["messages"] = [{"role": "user", "content": prompt}]
    else:
        out["prompt"] = prompt
    if cfg.ignore_eos:
        out["ignore_eos"] = True
    return out


async def send(
    client: httpx.AsyncClient, cfg: BenchConfig, body: dict[str, Any], rec: RequestRecord
) -> None:
    """Stream one request into ``rec``; every failure ends up in ``rec.error``."""
    path = "/v1/completions" if cfg.endpoint == "completions" else "/v1/chat/completions"
    start = time.perf_counter()
    chunks, usage, done = 0, None, False
    try:
        async with client.stream("POST", path, json=body) as resp:
            rec.status = resp.status_code
            if resp.status_code != 200:
                rec.error = _error_message(await resp.aread())
                return
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, SSE comments / keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                now = time.perf_counter() - start
                chunk = json.loads(data)
                if "error" in chunk:
                    rec.error = _error_message(data.encode())
                    return
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    text = choice.get("text") or (choice.get("delta") or {}).get("content")
                    if text:  # role-only and empty final chunks carry no tokens
                        rec.chunk_times.append(now)
                        chunks += 1
                        break
        rec.e2e = time.perf_counter() - start
        if not done:
            rec.error = "the stream ended without 'data: [DONE]'"
            return
        rec.output_tokens = int((usage or {}).get("completion_tokens") or chunks)
        pt = (usage or {}).get("prompt_tokens")
        rec.prompt_tokens = None if pt is None else int(pt)
        rec.ok = True
    except asyncio.CancelledError:
        rec.cancelled, rec.error = True, "cancelled at the duration limit"
        raise
    except httpx.HTTPError as e:
        rec.error = f"{type(e).__name__}: {e}"
    except (ValueError, TypeError, AttributeError) as e:
        rec.error = f"malformed stream chunk ({type(e).__name__}: {e})"
