"""The engine on its own thread, driven from asyncio (the server's event loop).

:class:`AsyncEngine` owns one :class:`dspark.engine.Engine`. Only its thread touches the engine:
requests, aborts and setting changes are commands queued to it and applied between steps, so the
engine needs no locks. Each request's outputs reach its handler through an ``asyncio.Queue`` fed
with ``loop.call_soon_threadsafe``. The queue in front of the engine is bounded
(:class:`QueueFull`, HTTP 503), a cancelled handler aborts its request (pages freed at the next
step boundary) and :meth:`AsyncEngine.drain` lets running requests finish before shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from dspark.engine.request import RequestOutput
from dspark.serve.metrics import ServerMetrics

__all__ = ["AsyncEngine", "EngineDead", "QueueFull"]

log = logging.getLogger("dspark.serve")


class QueueFull(RuntimeError):
    """The server holds as many requests as it accepts (HTTP 503)."""


class EngineDead(RuntimeError):
    """The engine thread failed or stopped; the request cannot complete (HTTP 500/503)."""


class AsyncEngine:
    """Runs ``engine`` on a background thread and streams each request's outputs to asyncio.

    Parameters
    ----------
    engine : dspark.engine.Engine
    max_queue : int
        Requests accepted beyond ``engine.max_num_seqs`` running ones; more get
        :class:`QueueFull`.
    metrics : ServerMetrics, optional
    """

    def __init__(self, engine: Any, *, max_queue: int = 256, metrics: ServerMetrics | None = None):
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue: expected an integer >= 0, got {max_queue!r}")
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = metrics or ServerMetrics(engine.max_k)
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._in_flight = 0  # accepted and not finished (asyncio side)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = 0
        self.draining = False
        self.error: BaseException | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="dspark-engine", daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    @property
    def num_in_flight(self) -> int:
        return self._in_flight

    async def drain(self, timeout: float = 30.0) -> bool:
        """Refuse new requests, wait (at most ``timeout`` s) for running ones; True if all
        finished. Whatever is left is aborted."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline and self.alive:
            await asyncio.sleep(0.02)
        done = self._in_flight == 0
        for rid in list(self._streams):
            self.abort(rid)
        return done

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- requests (asyncio side) ---------------------------------------------------------------
    async def submit(self, prompt_ids: list[int], params: Any, **kwargs: Any) -> str:
        """Queue a request; returns its id once the engine accepted it.

        Raises
        ------
        QueueFull
            Too many requests in the server, or it is draining.
        ValueError
            The engine refused the request (e.g. prompt longer than the context).
        """
        if self.draining:
            self.metrics.rejected.inc()
            raise QueueFull("the server is shutting down")
        if not self.alive:
            raise EngineDead(f"the engine is not running: {self.error!r}")
        if self._in_flight >= self.engine.max_num_seqs + self.max_queue:
            self.metrics.rejected.inc()
            raise QueueFull(
                f"the server holds {self._in_flight} requests, its limit "
                f"(max_num_seqs {self.engine.max_num_seqs} + max_queue {self.max_queue}); "
                "retry later"
            )
        loop = asyncio.get_running_loop()
        self._ids += 1
        rid = f"req-{self._ids}"
        self._streams[rid] = (loop, asyncio.Queue())
        self._in_flight += 1
        try:
            await self.call(lambda: self.engine.add_request(prompt_ids, params, rid, **kwargs))
        except BaseException:
            self._close(rid)
            raise
        return rid

    async def stream(self, rid: str) -> AsyncGenerator[RequestOutput, None]:
        """The request's outputs, one per engine step; ends after the finished one. Leaving
        early (cancellation, client disconnect) aborts the request."""
        q = self._streams[rid][1]
        finished = False
        try:
            while True:
                item = await q.get()
                if isinstance(item, BaseException):
                    raise EngineDead(f"the engine failed: {item!r}") from item
                yield item
                if item.finished:
                    finished = True
                    return
        finally:
            if not finished:
                self.abort(rid)
            self._close(rid)

    def abort(self, rid: str, reason: str = "abort") -> None:
        """Cancel ``rid`` at the next step boundary (its pages are freed then); ``reason`` is
        what ``/metrics`` records (``"stop"`` when the server ended it at a stop string)."""
        self._post(lambda: self._abort_now(rid, reason))

    def _abort_now(self, rid: str, reason: str) -> None:
        req = self.engine.requests.get(rid)
        if req is not None and req.finish_reason is None:
            self.engine.abort(rid)
            self.metrics.requests.labels(finish_reason=reason).inc()
        self.engine.requests.pop(rid, None)

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the engine thread between steps; returns its result."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # delivered to the caller
                    fut.set_exception(e)

        self._post(run)
        if not self.alive:
            raise EngineDead(f"the engine is not running: {self.error!r}")
        return await asyncio.wrap_future(fut)

    # --- the engine thread ----------------------------------------------------------------
    def _post(self, fn: Callable[[], None]) -> None:
        self._commands.put(fn)
        self._wake.set()

    def _close(self, rid: str) -> None:
        if self._streams.pop(rid, None) is not None:
            self._in_flight -= 1

    def _deliver(self, out: RequestOutput | BaseException, rid: str) -> None:
        entry = self._streams.get(rid)
        if entry is not None:
            loop, q = entry
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                loop.call_soon_threadsafe(q.put_nowait, out)

    def _apply_commands(self) -> None:
        while True:
            try:
                fn = self._commands.get_nowait()
            except queue.Empty:
                return
            fn()

    def _loop(self) -> None:
        eng, m = self.engine, self.metrics
        try:
            while not self._stop.is_set():
                self._apply_commands()
                if not eng.has_unfinished():
                    m.observe_engine(eng)
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                outs = eng.step()
                m.observe_step(eng.last_step)
                m.observe_engine(eng)
                for out in outs:
                    m.generation_tokens.inc(len(out.new_token_ids))
                    if out.finished:
                        req = eng.requests.pop(out.request_id, None)
                        self._record_finished(req, out)
                    self._deliver(out, out.request_id)
        except BaseException as e:  # the engine is broken: fail every request, stop
            log.exception("engine thread failed")
            self.error = e
            for rid in list(self._streams):
                self._deliver(e, rid)

    def _record_finished(self, req: Any, out: RequestOutput) -> None:
        m = self.metrics
        reason = out.finish_reason.value if out.finish_reason is not None else "unknown"
        m.requests.labels(finish_reason=reason).inc()
        m.prompt_tokens.inc(out.num_prompt_tokens)
        if req is not None:
            now = time.monotonic()
            m.e2e.observe(now - req.arrival_time)
            if req.first_token_time is not None:
                m.ttft.observe(req.first_token_time - req.arrival_time)
