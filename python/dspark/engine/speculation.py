"""The engine's speculation settings: modes, its own step-cost profile, the auto scheduler,
and the token budget that keeps requests within their TPOT targets.

A mixin of :class:`dspark.engine.Engine` (it reads the engine's runner, drafter, scheduler and
limits); kept apart so the step loop in ``engine.py`` stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dspark.engine.drafter_rows import DrafterRows
from dspark.engine.horizon import DraftHorizon
from dspark.engine.request import Request
from dspark.engine.runner import StepRequest
from dspark.scheduler import LoadMonitor

__all__ = ["SPECULATION", "SpeculationControl"]

SPECULATION = ("none", "fixed", "scheduler")


def _grid(cap: int) -> list[int]:
    """Token counts 1, 2, 4, ... (and a few between) up to ``cap``, for the step-cost profile."""
    pts = {1, cap}
    b = 2
    while b < cap:
        pts.update({b, min(cap, b + b // 2)})
        b *= 2
    return sorted(pts)


class SpeculationControl:
    """Speculation settings of an :class:`~dspark.engine.Engine` (mixin)."""

    runner: Any
    drafter: Any
    scheduler: Any
    monitor: Any
    horizon: DraftHorizon | None
    speculation: str
    k: int
    max_k: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    device: torch.device
    _drafter: Any
    _rows: DrafterRows | None

    def has_unfinished(self) -> bool:  # provided by the engine
        raise NotImplementedError

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return self.max_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise ValueError(
                f"num_draft_tokens: expected an integer in [1, {self.max_k}] (the drafter's "
                f"block size), got {k!r}"
            )
        return k

    # --- speculation settings ---------------------------------------------------------------
    def set_speculation(
        self, speculation: str, num_draft_tokens: int | None = None, scheduler: Any = None
    ) -> None:
        """Switch between ``"none"``, ``"fixed"`` (K drafts) and ``"scheduler"`` while idle.

        Raises
        ------
        RuntimeError
            Requests are in flight (switch between runs).
        ValueError
            Unknown mode, no drafter, or ``num_draft_tokens`` outside ``[1, block_size]``.
        """
        if speculation not in SPECULATION:
            raise ValueError(f"speculation: expected one of {SPECULATION}, got {speculation!r}")
        if self.has_unfinished():
            raise RuntimeError("set_speculation: requests are in flight; wait until they finish")
        if speculation != "none" and self._drafter is None:
            raise ValueError(f"speculation: {speculation!r} needs a drafter; the engine has none")
        if speculation == "none":
            self.drafter, self.k = None, 0
        else:
            self.drafter, self.k = self._drafter, self._check_k(num_draft_tokens)
        if speculation == "scheduler":
            if scheduler is not None:
                self.scheduler = scheduler
                mon = getattr(scheduler, "sps", None)
                self.monitor = mon if isinstance(mon, LoadMonitor) else None
            elif self.scheduler is None:
                if not self._drafter.has_confidence:
                    raise ValueError("speculation: 'scheduler' needs a drafter with confidences")
                self.scheduler = self.auto_scheduler()
        self.speculation = speculation
        self._rows = DrafterRows(self.drafter, self.device) if self.drafter is not None else None
        # self.horizon is kept: what it learned is the drafter's and the traffic's, not the mode's

    def profile_step_cost(
        self,
        context_len: int = 256,
        tokens: Sequence[int] | None = None,
        *,
        repeats: int = 3,
        warmup: int = 1,
    ) -> Any:
        """Measure this engine's step-rate curve: one packed forward of ``B`` tokens.

        A step of ``B`` tokens is ``R = ceil(B / (K + 1))`` requests of ``K + 1`` tokens each
        (an anchor and its drafts) over ``context_len`` cached tokens, logits for every row, as
        verification runs it. The requests live in the engine's own page pool and are freed
        afterwards; the engine must be idle. ``tokens`` defaults to a grid up to
        ``max_num_seqs * (K + 1)`` (capped by ``max_num_batched_tokens``).

        Returns
        -------
        dspark.SpsTable
        """
        from dspark.scheduler import profile_sps

        if self.has_unfinished():
            raise RuntimeError("profile_step_cost: requests are in flight")
        width = self.max_k + 1
        cache = self.runner.cache
        cap = min(self.max_num_seqs * width, self.max_num_batched_tokens)
        ctx = max(1, min(int(context_len), self.max_model_len - width - 1))
        fit = cache.num_pages // max(cache.pages_for(ctx + width), 1)
        cap = min(cap, fit * width)
        if cap < 1:
            raise ValueError(f"context_len: no room for one request of {ctx} tokens in the pool")
        grid = list(tokens) if tokens is not None else _grid(cap)
        ids = [f"__profile{i}" for i in range(-(-max(grid) // width))]
        vocab = int(self.runner.config.vocab_size)
        gen = torch.Generator().manual_seed(0)
        try:
            for rid in ids:
                cache.add(rid)
            prompt = torch.randint(0, vocab, (len(ids), ctx), generator=gen)
            self.runner.run(
                [StepRequest(rid, prompt[i], logits="none") for i, rid in enumerate(ids)]
            )
            row = torch.randint(0, vocab, (width,), generator=gen)

            def forward(b: int) -> None:
                n = -(-b // width)
                sizes = [width] * (n - 1) + [b - width * (n - 1)]
                self.runner.run(
                    [StepRequest(ids[i], row[: sizes[i]], logits="all") for i in range(n)]
                )
                for i in range(n):
                    cache.truncate(ids[i], ctx)

            return profile_sps(forward, grid, warmup=warmup, repeats=repeats)
        finally:
            for rid in ids:
                if rid in cache:
                    cache.free(rid)

    def auto_scheduler(
        self, context_len: int = 256, *, asynchronous: bool = False, delay: int = 2
    ) -> Any:
        """A :class:`dspark.PrefixScheduler` (or, ``asynchronous``, an
        :class:`dspark.scheduler.AsyncPrefixScheduler` whose capacity lags ``delay`` steps) on a
        :class:`dspark.LoadMonitor` started from this engine's measured step cost
        (:meth:`profile_step_cost`); steps refine it online."""
        from dspark.scheduler import AsyncPrefixScheduler, LoadMonitor, PrefixScheduler

        self.monitor = LoadMonitor(self.profile_step_cost(context_len))
        if asynchronous:
            return AsyncPrefixScheduler(self.monitor, delay=delay)
        return PrefixScheduler(self.monitor)

    def _schedule(self, conf: torch.Tensor, decode: list[Request]) -> list[int]:
        """Verify lengths from the scheduler for ``decode``'s confidences ``conf [R, h]``
        (remaining tokens and the TPOT budget applied); an AsyncPrefixScheduler's ``step``."""
        rem = torch.tensor([r.remaining for r in decode])
        budget = self._slo_budget(decode)
        kw = {} if budget is None else {"token_budget": budget}
        if hasattr(self.scheduler, "next_capacity"):  # AsyncPrefixScheduler
            lengths = self.scheduler.step(conf, remaining_tokens=rem, **kw)
        else:
            lengths = self.scheduler.schedule(conf, remaining_tokens=rem, **kw)
        return torch.as_tensor(lengths).tolist()

    def _skip_schedule(self) -> None:
        """A step that drafts nothing: an AsyncPrefixScheduler still advances (``skip``)."""
        if self.speculation == "scheduler" and hasattr(self.scheduler, "next_capacity"):
            self.scheduler.skip()

    def _verify_table(self) -> Any:
        """The verification step's cost curve (the scheduler's, a snapshot of its monitor)."""
        sps = getattr(self.scheduler, "sps", None)
        return sps.table() if isinstance(sps, LoadMonitor) else sps

    def _slo_budget(self, decode: list[Request]) -> int | None:
        """Largest step (in tokens) whose time keeps every SLO request within its TPOT target.

        A request emitting ``e`` tokens per step on average (its measured acceptance, 1 before
        it has any) gets TPOT ``step_time(B) / e``; the budget is the largest ``B`` on the
        step-cost curve with ``step_time(B) <= min_r slo_r * e_r``, at least one token per
        request (plain decoding is never refused).
        """
        slos = [(r.tpot_slo, r) for r in decode if r.tpot_slo is not None]
        table = self._verify_table() if slos else None
        if table is None:
            return None
        allowed = min(slo * (1.0 + sum(r.accepted) / max(1, r.num_steps)) for slo, r in slos)
        grid = [int(b) for b in table.tokens]
        fits = [b for b in grid if table.step_time(b) <= allowed]
        return max(len(decode), max(fits) if fits else 0)
