"""The continuous-batching engine: requests join and leave at every step.

One :meth:`Engine.step` is one packed target forward over every running request: decoding
requests contribute ``[anchor, d_1..d_k]`` (their drafts, ``k`` chosen per request), prefilling
requests a chunk of their prompt, within ``max_num_batched_tokens``. Verification is one
:func:`dspark.verify_batch` call over all of them (requests whose prompt just completed verify
zero drafts, which samples their first token), so every request keeps the target's output law
with its own sampling parameters and seed. Rejected drafts are rolled back by length; when the
page pool runs out the most recently admitted request is preempted (its pages freed, its
context recomputed later, its output unchanged).

Speculation modes: ``"none"`` (plain decoding on the same engine), ``"fixed"`` (``k = K``) and
``"scheduler"`` (``k`` from the drafter's confidences by a :class:`dspark.PrefixScheduler`-like
object). The drafter state holds exactly the decoding requests, in ``self.running`` order.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from dspark.engine.drafter_rows import DrafterRows
from dspark.engine.horizon import DraftHorizon
from dspark.engine.request import FinishReason, Request, RequestOutput, RequestStatus
from dspark.engine.runner import ModelRunner, StepRequest
from dspark.engine.speculation import SPECULATION, SpeculationControl
from dspark.ops.verify import verify_batch
from dspark.scheduler import LoadMonitor

__all__ = ["Engine"]


class Engine(SpeculationControl):
    """Continuous batching over dspark's paged engine core.

    Parameters
    ----------
    target : PreTrainedModel
        The Hugging Face causal LM (head dim 64, 128 or 256).
    drafter : Drafter, optional
        A dspark drafter bound to ``target``; required unless ``speculation="none"``.
    speculation : {"none", "fixed", "scheduler"}, optional
        Default: ``"scheduler"`` for a drafter with a confidence head and a ``scheduler``,
        ``"fixed"`` for any other drafter, ``"none"`` without one.
    num_draft_tokens : int, optional
        Drafts per request and step (``K``; default the drafter's block size).
    scheduler : object with ``schedule(confidence[R, G], remaining_tokens=[R]) -> [R]``
        Chooses verify lengths in ``"scheduler"`` mode (e.g. ``dspark.PrefixScheduler``), or
        a :class:`dspark.scheduler.AsyncPrefixScheduler` (its ``step``; its ``skip`` on steps
        that draft nothing). Either one's ``sps``, when a ``LoadMonitor``, is refined from
        measured steps.
        Default for a drafter with confidences: :meth:`auto_scheduler`, a ``PrefixScheduler``
        on a ``LoadMonitor`` started from the engine's own measured step cost and refined from
        every verification step's measured time.
    num_pages, page_size : int
        The KV page pool (default: room for ``max_num_seqs`` requests of ``max_model_len``).
    max_num_seqs : int
        Running requests at most (the rest wait).
    max_num_batched_tokens : int
        Tokens per packed forward at most (decode rows first, then prefill chunks).
    max_model_len : int, optional
        Longest prompt + output (default the model's ``max_position_embeddings``).
    """

    def __init__(
        self,
        target: Any,
        drafter: Any = None,
        *,
        speculation: str | None = None,
        num_draft_tokens: int | None = None,
        scheduler: Any = None,
        num_pages: int | None = None,
        page_size: int = 16,
        max_num_seqs: int = 32,
        max_num_batched_tokens: int = 512,
        max_model_len: int | None = None,
    ) -> None:
        if speculation is None:
            speculation = "none" if drafter is None else ("scheduler" if scheduler else "fixed")
        if speculation not in SPECULATION:
            raise ValueError(f"speculation: expected one of {SPECULATION}, got {speculation!r}")
        if speculation != "none" and drafter is None:
            raise ValueError(f"drafter: speculation={speculation!r} needs a drafter")
        if speculation == "scheduler" and scheduler is None and not drafter.has_confidence:
            raise ValueError(
                "scheduler: speculation='scheduler' needs a scheduler object or a drafter with "
                "a confidence head"
            )
        cfg = getattr(target.config, "text_config", None) or target.config
        self.max_model_len = int(max_model_len or cfg.max_position_embeddings)
        for name, v in (
            ("max_num_seqs", max_num_seqs),
            ("page_size", page_size),
            ("max_num_batched_tokens", max_num_batched_tokens),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
        self.target, self.speculation = target, speculation
        self._drafter = drafter  # kept in "none" mode so set_speculation can switch back
        self.drafter = drafter if speculation != "none" else None
        self.max_k = int(drafter.config.block_size) if drafter is not None else 0
        self.k = self._check_k(num_draft_tokens) if speculation != "none" else 0
        self.scheduler = scheduler
        # The LoadMonitor fed by measured step times (the auto scheduler's, or the given one's).
        self.monitor: Any = getattr(scheduler, "sps", None)
        if not isinstance(self.monitor, LoadMonitor):
            self.monitor = None
        self.max_num_seqs, self.max_num_batched_tokens = max_num_seqs, max_num_batched_tokens
        if num_pages is None:
            num_pages = max_num_seqs * -(-(self.max_model_len + self.max_k + 1) // page_size)
        layers = drafter.config.feature_layers if drafter is not None else []
        self.runner = ModelRunner(
            target, num_pages=num_pages, page_size=page_size, feature_layers=layers
        )
        self.device = self.runner.device
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order; decoding ones == drafter state rows
        self.requests: dict[str, Request] = {}
        self._rows = DrafterRows(self.drafter, self.device) if self.drafter is not None else None
        self.horizon = DraftHorizon(self.max_k) if drafter is not None else None
        self._ids = itertools.count()
        self.last_step: dict[str, Any] = {}
        if speculation == "scheduler" and scheduler is None:
            self.scheduler = self.auto_scheduler()

    # --- requests -------------------------------------------------------------------------
    def add_request(
        self,
        prompt_token_ids: Sequence[int],
        params: Any,
        request_id: str | None = None,
        *,
        tpot_slo: float | None = None,
        logprobs: bool = False,
    ) -> str:
        """Queue a request; returns its id. ``params`` is a :class:`dspark.SamplingParams`.

        ``tpot_slo`` (seconds per output token) is a latency target the scheduler honours by
        capping the step's tokens (``speculation="scheduler"`` only); ``logprobs`` asks for the
        log-probability of every emitted token under the processed target distribution.
        """
        if tpot_slo is not None and (
            isinstance(tpot_slo, bool)
            or not isinstance(tpot_slo, (int, float))
            or not tpot_slo > 0
            or tpot_slo != tpot_slo
        ):
            raise ValueError(f"tpot_slo: expected seconds > 0 or None, got {tpot_slo!r}")
        prompt = [int(t) for t in prompt_token_ids]
        vocab = int(self.runner.config.vocab_size)
        if not prompt:
            raise ValueError("prompt_token_ids: expected at least one token, got none")
        bad = [t for t in prompt if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"prompt_token_ids: expected token ids in [0, {vocab}), got {bad[:5]}")
        if len(prompt) >= self.max_model_len:
            raise ValueError(
                f"prompt_token_ids: expected fewer than max_model_len={self.max_model_len} "
                f"tokens (the model's context), got {len(prompt)}"
            )
        max_tokens = params.max_tokens
        if max_tokens is None:
            max_tokens = self.max_model_len - len(prompt)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens: expected an integer >= 1, got {max_tokens!r}")
        if len(prompt) + max_tokens > self.max_model_len:
            raise ValueError(
                f"max_tokens: the prompt ({len(prompt)} tokens) plus max_tokens "
                f"({max_tokens}) exceeds max_model_len {self.max_model_len}"
            )
        rid = str(next(self._ids)) if request_id is None else str(request_id)
        if rid in self.requests:
            raise ValueError(f"request_id: {rid!r} is already in the engine")
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)))
        stop = frozenset(int(t) for t in (getattr(params, "stop", None) or ()))
        req = Request(rid, prompt, params, seed=int(seed), max_tokens=max_tokens, stop=stop)
        req.tpot_slo, req.want_logprobs = tpot_slo, bool(logprobs)
        self.requests[rid] = req
        self.waiting.append(req)
        return rid

    def abort(self, request_id: str) -> None:
        """Cancel a request (its pages are freed at once); unknown ids are ignored."""
        req = self.requests.get(request_id)
        if req is not None and req.status is not RequestStatus.FINISHED:
            self._finish(req, FinishReason.ABORT)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_free_pages(self) -> int:
        return self.runner.cache.num_free_pages

    # --- the step -----------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Admit, schedule, draft, run one packed forward, verify; outputs of this step."""
        t0 = time.perf_counter()
        self._admit()
        decode, chunks = self._plan()
        if not decode and not chunks:
            return []
        drafts, k, draft_logits, draft_seconds = self._draft(decode)
        step = [
            StepRequest(r.request_id, torch.tensor([r.anchor, *drafts[i][: k[i]]]), logits="all")
            for i, r in enumerate(decode)
        ]
        fresh = []
        for r, n in chunks:
            ctx = r.context[r.num_computed : r.num_computed + n]
            is_fresh = r.num_computed + n == r.context_len and r.anchor is None
            fresh += [r] if is_fresh else []
            step.append(
                StepRequest(r.request_id, torch.tensor(ctx), logits="last" if is_fresh else "none")
            )
        out = self.runner.run(step)
        starts = list(out.layout.qo_indptr_host)
        joined = []
        for j, (r, n) in enumerate(chunks):
            if self._rows is not None:
                s = starts[len(decode) + j]
                self._rows.add_features(r.request_id, out.features[s : s + n])
            r.num_computed += n
            if not r.is_prefilling and (r.anchor is not None or r in fresh):
                joined.append(r)
        outputs, acc, rows = self._verify(decode, fresh, k, drafts, draft_logits, out)
        self._update_drafter(decode, acc, rows, out, starts, joined)
        seconds = time.perf_counter() - t0
        if self.monitor is not None and decode and not chunks:
            # The verification step's cost (drafting is DraftHorizon's to account for).
            self.monitor.observe(out.layout.num_tokens, seconds - draft_seconds)
        if self.speculation == "scheduler" and draft_logits is not None:
            self.horizon.observe_verify(k, acc[: len(decode)])
        self.last_step = {
            "seconds": seconds,
            "draft_seconds": draft_seconds,
            "tokens": out.layout.num_tokens,
            "decode": len(decode),
            "prefill_tokens": sum(n for _, n in chunks),
            "lengths": k,
            "accepted": acc[: len(decode)],
        }
        return outputs

    def _admit(self) -> None:
        """Admit waiting requests (FIFO) while their whole context fits in the free pages."""
        cache, reserved = self.runner.cache, 0
        while self.waiting and len(self.running) < self.max_num_seqs:
            req = self.waiting[0]
            need = cache.pages_for(req.context_len + 1 + self.k)
            if self.running and need + reserved > cache.num_free_pages:
                break  # wait for pages (a lone request is admitted and chunked regardless)
            reserved += need
            self.waiting.popleft()
            req.status = RequestStatus.RUNNING
            cache.add(req.request_id)
            self.running.append(req)

    def _decoding(self) -> list[Request]:
        if self._rows is not None:
            return [self.requests[r] for r in self._rows.decoding()]
        return [r for r in self.running if not r.is_prefilling]

    def _plan(self) -> tuple[list[Request], list[tuple[Request, int]]]:
        """Decode rows first (preempting the latest admitted requests, LIFO, until their growth
        fits), then prefill chunks within the token budget and the pages left."""
        cache = self.runner.cache

        def extra(r: Request, length: int) -> int:
            return max(0, cache.pages_for(length) - len(cache.pages(r.request_id)))

        decode = self._decoding()
        need = {r.request_id: extra(r, r.num_computed + 1 + self.k) for r in decode}
        total = sum(need.values())
        while total > cache.num_free_pages:
            total -= need.pop(self.running[-1].request_id, 0)
            self._preempt_latest()
        decode = [r for r in decode if r.request_id in need]
        free = cache.num_free_pages - total
        budget = self.max_num_batched_tokens - len(decode) * (1 + self.k)
        chunks = []
        for r in self.running:
            if budget <= 0 or not r.is_prefilling:
                continue
            held = len(cache.pages(r.request_id)) * cache.page_size
            room = held - r.num_computed + free * cache.page_size
            n = min(r.context_len - r.num_computed, budget, room)
            if n <= 0:
                continue
            chunks.append((r, n))
            budget -= n
            free -= extra(r, r.num_computed + n)
        if not decode and not chunks and self.running:
            # Nothing fits: free the latest request's pages so the others can progress.
            self._preempt_latest()
            return self._plan()
        return decode, chunks

    def _preempt_latest(self) -> None:
        """Preempt the most recently admitted request (LIFO); a lone request cannot be."""
        if len(self.running) == 1:
            cache = self.runner.cache
            raise RuntimeError(
                f"num_pages: one request needs more than all {cache.num_pages} pages of "
                f"{cache.page_size} slots; raise num_pages or lower max_model_len"
            )
        self._preempt(self.running[-1])

    def _preempt(self, req: Request) -> None:
        """Free ``req``'s pages and queue it first; its context is recomputed later."""
        self._drop_from_drafter(req)
        self.runner.cache.free(req.request_id)
        self.running.remove(req)
        req.num_computed, req.status = 0, RequestStatus.WAITING
        req.num_preemptions += 1
        self.waiting.appendleft(req)

    def _drop_from_drafter(self, req: Request) -> None:
        if self._rows is not None:
            self._rows.drop(req.request_id)

    def _sampling(self, reqs: Sequence[Request]) -> dict[str, torch.Tensor]:
        dev = self.device

        def col(name: str, default: float, dtype: torch.dtype) -> torch.Tensor:
            vals = [getattr(r.params, name, None) for r in reqs]
            return torch.tensor(
                [default if v is None else v for v in vals], dtype=dtype, device=dev
            )

        return {
            "temperature": col("temperature", 1.0, torch.float32),
            "top_k": col("top_k", 0, torch.int64),
            "top_p": col("top_p", 1.0, torch.float32),
        }

    def _min_p(self, reqs: Sequence[Request]) -> torch.Tensor:
        vals = [float(getattr(r.params, "min_p", 0.0) or 0.0) for r in reqs]
        return torch.tensor(vals, dtype=torch.float32, device=self.device)

    def _draft(
        self, decode: list[Request]
    ) -> tuple[list[list[int]], list[int], torch.Tensor | None, float]:
        """Drafts and verify lengths for ``decode``: ``K`` in fixed mode; in scheduler mode the
        horizon :class:`DraftHorizon` chooses (0: draft nothing), then the scheduler a prefix of
        it per request from the confidences."""
        none = ([[] for _ in decode], [0] * len(decode), None, 0.0)
        if self._rows is None or not decode or self.k == 0:
            return none
        h = self.k
        if self.speculation == "scheduler":
            table = self._verify_table()
            cost = table.step_time if table is not None else (lambda b: 1.0)  # no curve: the most
            h = self.horizon.choose(len(decode), cost)  # tokens per step win
        caps = [max(0, min(h, r.remaining - 1)) for r in decode]
        if max(caps) == 0:
            self._skip_schedule()
            return none
        t0 = time.perf_counter()
        state = self._rows.flush()  # the state's rows are `decode` now
        # Committing is owed for every kept token whether or not this step drafts (it is only
        # batched differently), so the horizon's drafting cost is the propose alone.
        t1 = time.perf_counter()
        anchor = torch.tensor([r.anchor for r in decode], device=self.device)
        prop = self.drafter.propose(state, anchor, num_tokens=h, **self._sampling(decode))
        if self.speculation == "scheduler":
            lengths = self._schedule(prop.confidence[:, :h].float().cpu(), decode)
            k = [min(int(n), c) for n, c in zip(lengths, caps, strict=True)]
        else:
            k = caps
        tokens = prop.tokens.tolist()
        t2 = time.perf_counter()
        self.horizon.observe_draft(h, t2 - t1)
        return tokens, k, prop.draft_logits, t2 - t0

    def _verify(self, decode, fresh, k, drafts, draft_logits, out):
        """One verify_batch over decode rows and fresh prefills; emit; roll back."""
        ver = decode + fresh
        if not ver:
            return [], [], []
        lens = k + [0] * len(fresh)
        dev = self.device
        indptr = torch.zeros(len(ver) + 1, dtype=torch.int32, device=dev)
        indptr[1:] = torch.cumsum(torch.tensor(lens, device=dev), 0)
        toks = [t for i in range(len(decode)) for t in drafts[i][: k[i]]]
        dl = None
        if draft_logits is not None:
            dl = torch.cat([draft_logits[i, : k[i]] for i in range(len(decode))]).float()
        samp = self._sampling(ver)
        res = verify_batch(
            out.logits.float(),
            torch.tensor(toks, dtype=torch.int64, device=dev),
            indptr,
            draft_logits=dl,
            seed=torch.tensor([r.seed for r in ver], dtype=torch.int64, device=dev),
            offset=torch.tensor([r.offset for r in ver], dtype=torch.int64, device=dev),
            max_emit=torch.tensor(
                [max(r.remaining, 1) for r in ver], dtype=torch.int64, device=dev
            ),
            max_depth=max(lens),
            min_p=self._min_p(ver),
            return_logprobs=any(r.want_logprobs for r in ver),
            **samp,
        )
        acc, num, offs = res.accept_len.tolist(), res.num_emitted.tolist(), res.next_offset.tolist()
        rows = res.tokens.tolist()
        lps = res.logprobs.tolist() if res.logprobs is not None else None
        outputs = []
        for i, r in enumerate(ver):
            r.offset = offs[i]
            if i < len(decode):
                a = acc[i]
                r.num_steps += 1
                self.runner.cache.truncate(r.request_id, r.num_computed + 1 + a)
                r.num_computed += 1 + a
                for p in range(k[i]):
                    if p == len(r.drafted):
                        r.drafted.append(0)
                        r.accepted.append(0)
                    r.drafted[p] += 1
                    r.accepted[p] += int(p < a)
            lp = lps[i][: num[i]] if lps is not None and r.want_logprobs else None
            outputs.append(self._emit(r, rows[i][: num[i]], lp))
        return outputs, acc, rows

    def _emit(
        self, req: Request, tokens: list[int], logprobs: list[float] | None = None
    ) -> RequestOutput:
        stops = req.stop
        cut = next((i for i, t in enumerate(tokens) if t in stops), None)
        new = tokens if cut is None else tokens[: cut + 1]
        new = new[: max(req.remaining, 0)]
        if req.first_token_time is None and new:
            req.first_token_time = time.monotonic()
        req.output_token_ids.extend(new)
        reason = None
        if cut is not None and cut < len(new):
            reason = FinishReason.STOP
        elif req.remaining <= 0:
            reason = FinishReason.LENGTH
        if reason is not None:
            self._finish(req, reason)
        return RequestOutput(
            req.request_id,
            new,
            reason is not None,
            reason,
            len(req.prompt_token_ids),
            len(req.output_token_ids),
            logprobs[: len(new)] if logprobs is not None else None,
        )

    def _finish(self, req: Request, reason: FinishReason) -> None:
        self._drop_from_drafter(req)
        if req in self.running:
            self.runner.cache.free(req.request_id)
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        req.status, req.finish_reason = RequestStatus.FINISHED, reason

    def _update_drafter(self, decode, acc, rows, out, starts, joined) -> None:
        """Record what the target kept (committed at the next drafting step, one batched
        commit) and let newly prefilled requests decode (they join the state then too)."""
        if self._rows is None:
            return
        feats = out.features
        for i, r in enumerate(decode):
            if r.status is RequestStatus.RUNNING:
                c = acc[i] + 1
                self._rows.add_features(r.request_id, feats[starts[i] : starts[i] + c])
                self._rows.add_next(r.request_id, rows[i][:c])
        for r in joined:
            if r.status is RequestStatus.RUNNING:
                self._rows.ready(r.request_id, [*r.context[1:], r.anchor])

    # --- convenience ----------------------------------------------------------------------------
    def generate(
        self, prompts: Iterable[Sequence[int]], params: Any | Sequence[Any]
    ) -> list[list[int]]:
        """Run ``prompts`` to completion; returns each one's output token ids, in order."""
        prompts = list(prompts)
        plist = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, plist, strict=True)]
        while self.has_unfinished():
            self.step()
        return [self.requests[i].output_token_ids for i in ids]
