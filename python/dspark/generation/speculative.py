"""Speculative generation: a drafter proposes, the target verifies with ``dspark.verify_batch``.

Each round, for the R active requests: the drafter proposes G tokens (one parallel pass for
DSpark/DFlash plus DSpark's sequential head; G steps for Eagle3), an optional scheduler or
confidence threshold picks how many of them each request verifies, one target forward scores
``[anchor, d_1..d_n]``, ``verify_batch`` accepts a prefix and emits one more token (correction
or bonus), and both caches roll back the rejected tail. The output is distributed exactly as
sampling from the target (greedy: identical to the target's greedy decoding).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from dspark.generation.inputs import RequestParams, check_generate_inputs
from dspark.generation.paged_target import PagedTargetRunner
from dspark.generation.rounds import Emitter, read_round
from dspark.generation.stats import GenerationOutput, RoundStats, StreamEvent, assemble_output
from dspark.generation.target_runner import TargetRunner
from dspark.models.base import Drafter
from dspark.ops.static_tree import StaticTree
from dspark.ops.verify import verify_batch

__all__ = ["SpeculativeGenerator"]

Scheduler = Callable[[torch.Tensor], torch.Tensor] | Any


class SpeculativeGenerator:
    """Reusable speculative decoder for one (target, drafter) pair.

    Parameters
    ----------
    target : PreTrainedModel
        Hugging Face causal LM.
    drafter : Drafter
        Built for (and bound to) ``target`` (see :func:`dspark.models.build_drafter`).
    scheduler : callable or object with ``.schedule``, optional
        Chooses verify lengths from confidences: ``(R, G) float -> (R,) int`` (e.g.
        ``dspark.PrefixScheduler``). It must follow the early-stop rule of docs/algorithms.md
        section 4 (a length may depend only on confidences up to that position) to stay lossless.
        Needs a drafter with a confidence head (DSpark).
    confidence_threshold : float, optional
        Verify the longest prefix whose cumulative survival ``prod_{i<=k} c_i`` stays >= this.
    num_draft_tokens : int, optional
        Drafts per round (default: the drafter's ``block_size``).
    tree_choices : sequence of sequences of int, optional
        Draft a static tree instead of a chain (Eagle3 only), given as EAGLE-style paths of child
        ranks, e.g. ``[(0,), (1,), (0, 0), (0, 1), (0, 0, 0)]``; verified with tree attention and
        the deterministic-draft rule (lossless at any temperature). Rounds whose token budget is
        smaller than the tree depth fall back to chains.
    compact_ratio, compact_slack : float, int
        ``engine="hf"`` only: compact the target cache (drop the holes left by ragged rollbacks)
        when its length exceeds ``compact_ratio * longest_request + compact_slack``.
    record_draft_probs : bool
        Also record, per round, the drafter's probability ``q(d_k)`` of each verified draft
        token (:attr:`RoundStats.draft_prob`; chains only; greedy drafting: under the unscaled
        logits): a confidence score for drafters without a confidence head, used by the
        evaluation's confidence AUC.
    engine : {"auto", "paged", "hf"}
        Where the target runs: ``"paged"`` on dspark's engine core (a paged KV cache with O(1)
        rollback and packed steps through ``verify_attention``), ``"hf"`` with transformers'
        ``DynamicCache``; ``"auto"`` picks ``"paged"`` when the target's head dim has a
        ``verify_attention`` kernel (64, 128, 256).
    """

    def __init__(
        self,
        target: Any,
        drafter: Drafter,
        *,
        scheduler: Scheduler | None = None,
        confidence_threshold: float | None = None,
        num_draft_tokens: int | None = None,
        tree_choices: Sequence[Sequence[int]] | None = None,
        compact_ratio: float = 2.0,
        compact_slack: int = 64,
        record_draft_probs: bool = False,
        engine: str = "auto",
    ) -> None:
        if not isinstance(drafter, Drafter):
            raise TypeError(f"drafter: expected a dspark Drafter, got {type(drafter).__name__}")
        drafter.config.check_target(target.config, what=f"{drafter.kind} drafter")
        if not drafter.is_bound_to(target):
            raise ValueError(
                "drafter: it is bound to another target instance (its shared embedding is not this "
                "target's); call drafter.attach(target) first"
            )
        has_conf = drafter.has_confidence
        if (scheduler is not None or confidence_threshold is not None) and not has_conf:
            raise ValueError(
                f"scheduler: choosing verify lengths needs confidences, and a {drafter.kind} "
                "drafter has no confidence head"
            )
        if scheduler is not None and confidence_threshold is not None:
            raise ValueError("scheduler, confidence_threshold: pass at most one of them")
        if confidence_threshold is not None and not 0 <= confidence_threshold <= 1:
            raise ValueError(
                f"confidence_threshold: expected a value in [0, 1], got {confidence_threshold}"
            )
        if num_draft_tokens is not None and num_draft_tokens < 1:
            raise ValueError(f"num_draft_tokens: expected an int >= 1, got {num_draft_tokens}")
        self.tree = None
        if tree_choices is not None:
            if not drafter.supports_tree:
                raise ValueError(
                    f"tree_choices: a {drafter.kind} drafter drafts chains only (Eagle3 trees)"
                )
            if scheduler is not None or confidence_threshold is not None:
                raise ValueError("tree_choices: trees are verified whole (no scheduler/threshold)")
            self.tree = StaticTree.from_choices(tree_choices)
        self.target, self.drafter = target, drafter
        self.scheduler = scheduler
        self.confidence_threshold = confidence_threshold
        self.num_draft_tokens = num_draft_tokens or drafter.config.block_size
        self.compact_ratio, self.compact_slack = compact_ratio, compact_slack
        self.record_draft_probs = bool(record_draft_probs)
        if engine not in ("auto", "paged", "hf"):
            raise ValueError(f"engine: expected 'auto', 'paged' or 'hf', got {engine!r}")
        if engine == "paged" and not PagedTargetRunner.supports(target):
            raise ValueError(
                "engine: 'paged' needs a target head dim of 64, 128 or 256 (verify_attention's "
                "kernels); use engine='hf' or 'auto'"
            )
        self.engine = engine

    # --- public API -------------------------------------------------------------------------
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int | Sequence[int] | torch.Tensor | None = None,
        temperature: float | Sequence[float] | torch.Tensor = 1.0,
        top_k: int | Sequence[int] | torch.Tensor = 0,
        top_p: float | Sequence[float] | torch.Tensor = 1.0,
        stop_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
        pad_token_id: int | None = None,
        seed: int | None = None,
        streamer: Callable[[int, list[int]], None] | None = None,
        sampling: Any = None,
    ) -> GenerationOutput:
        """Generate continuations of a batch of prompts (see :func:`dspark.generate`)."""
        params = check_generate_inputs(
            self.target,
            input_ids,
            attention_mask,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_token_ids=stop_token_ids,
            pad_token_id=pad_token_id,
            sampling=sampling,
        )
        generated: list[list[int]] = [[] for _ in range(params.batch)]
        rounds: list[RoundStats] = []
        for event in self._run(params, seed, rounds):
            generated[event.request].extend(event.tokens)
            if streamer is not None and event.tokens:
                streamer(event.request, list(event.tokens))
        return assemble_output(params, generated, rounds)

    def stream(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Iterator[StreamEvent]:
        """Like :meth:`generate` but yields a :class:`StreamEvent` per request and round."""
        params = check_generate_inputs(self.target, input_ids, attention_mask, **kwargs)
        yield from self._run(params, seed, [])

    # --- the loop -----------------------------------------------------------------------------
    def _run(
        self, prm: RequestParams, seed: int | None, rounds: list[RoundStats]
    ) -> Iterator[StreamEvent]:
        runner = self._target_runner(prm, self.drafter.config.feature_layers)
        try:
            yield from self._loop(prm, seed, rounds, runner)
        finally:
            if isinstance(runner, PagedTargetRunner):
                runner.close()  # every page back to the pool, feature hooks removed

    def _loop(
        self, prm: RequestParams, seed: int | None, rounds: list[RoundStats], runner: Any
    ) -> Iterator[StreamEvent]:
        dev, drafter = prm.device, self.drafter
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
        vseed = torch.randint(0, 2**62, (prm.batch,), generator=gen, device=dev)
        voffset = torch.zeros(prm.batch, dtype=torch.int64, device=dev)
        state = drafter.new_state(prm.batch)
        emitter = Emitter(prm)  # host bookkeeping: nothing below reads the device to schedule

        # Prefill, then the first token straight from the target (a verification with 0 drafts).
        with torch.no_grad():
            pre = runner.prefill_packed(prm.input_ids, prm.attention_mask)
        res = verify_batch(
            pre.logits.float(),
            torch.zeros(0, dtype=torch.int64, device=dev),
            torch.zeros(prm.batch + 1, dtype=torch.int32, device=dev),
            temperature=prm.temperature,
            top_k=prm.top_k,
            top_p=prm.top_p,
            seed=vseed,
            offset=voffset,
            max_depth=0,  # no drafts: the output is the first sampled token only
        )
        voffset = res.next_offset
        anchor = res.final_token.long()
        # The drafter's context: features of every real prompt position, each paired with its
        # successor token (the prompt shifted by one, then the first sampled token).
        feats = pre.features
        order = torch.sort((~prm.attention_mask).to(torch.int8), dim=1, stable=True).indices
        feats = feats.gather(1, order[:, :, None].expand(-1, -1, feats.shape[-1]))
        toks = prm.input_ids.gather(1, order)
        plen = runner.lengths.clone()
        nxt = torch.cat([toks, torch.zeros_like(toks[:, :1])], dim=1)
        nxt.scatter_(1, plen[:, None], anchor[:, None])
        drafter.commit(state, feats, nxt[:, 1:], plen)
        active_h = list(range(prm.batch))
        events = emitter.emit(active_h, [[t] for t in anchor.tolist()])
        yield from events

        active = torch.arange(prm.batch, device=dev)
        sampling = {"temperature": prm.temperature, "top_k": prm.top_k, "top_p": prm.top_p}
        keep = [not e.finished for e in events]
        while any(keep):
            if not all(keep):
                sel = [i for i, k in enumerate(keep) if k]
                idx = torch.tensor(sel, device=dev)
                active_h = [active_h[i] for i in sel]
                active, anchor, vseed, voffset = active[idx], anchor[idx], vseed[idx], voffset[idx]
                sampling = {k: getattr(prm, k)[active] for k in sampling}
                runner.select(idx)
                drafter.select(state, idx)
            t0 = time.perf_counter()
            remaining = emitter.remaining(active_h)
            caps = [min(max(x - 1, 0), self.num_draft_tokens) for x in remaining]
            max_emit = torch.tensor(remaining, dtype=torch.int32, device=dev)
            verify_args = {**sampling, "seed": vseed, "offset": voffset, "max_emit": max_emit}
            if self.tree is not None and min(caps) >= self.tree.max_depth:
                res, read, lens, depth_cap, t1 = self._tree_round(
                    runner, state, anchor, verify_args
                )
                qprob = None
            else:
                res, read, lens, t1, qprob = self._chain_round(
                    runner, state, anchor, gen, caps, sampling, verify_args
                )
                depth_cap = lens
            voffset = res.next_offset
            anchor = res.final_token.long()
            t2 = time.perf_counter()
            events = emitter.emit(active_h, read.tokens)
            yield from events
            acc = read.accepted
            rounds.append(
                RoundStats(
                    requests=list(active_h),
                    proposed=lens,
                    accepted=acc,
                    first_rejection=[
                        a + 1 if a < n else -1 for a, n in zip(acc, depth_cap, strict=True)
                    ],
                    emitted=[len(e.tokens) for e in events],
                    depth=depth_cap,
                    draft_time=t1 - t0,
                    verify_time=t2 - t1,
                    wall_time=time.perf_counter() - t0,
                    confidence=None
                    if read.confidence is None
                    else [c[:n] for c, n in zip(read.confidence, lens, strict=True)],
                    draft_prob=None
                    if qprob is None
                    else [q[:n] for q, n in zip(qprob.tolist(), lens, strict=True)],
                )
            )
            keep = [not e.finished for e in events]

    def _target_runner(self, prm: RequestParams, layers: Sequence[int]) -> Any:
        if self.engine == "hf" or not PagedTargetRunner.supports(self.target):
            return TargetRunner(self.target, layers, self.compact_ratio, self.compact_slack)
        extra = self.tree.num_nodes if self.tree is not None else self.num_draft_tokens
        longest = prm.input_ids.shape[1] + int(prm.max_new_tokens.max()) + extra + 2
        return PagedTargetRunner(self.target, layers, max_len=longest)

    def _chain_round(self, runner, state, anchor, gen, caps, sampling, verify_args):
        """Draft a chain, verify the chosen prefix of it, roll back, feed the drafter; the
        round's results reach the host in one read."""
        n_max = max(caps)
        prop, lens, conf, conf_h = None, caps, None, None
        if n_max > 0:
            prop = self.drafter.propose(state, anchor, generator=gen, num_tokens=n_max, **sampling)
            conf = None if prop.confidence is None else prop.confidence.float()
            lens, conf_h = self._verify_lengths(conf, n_max, caps)
        n_max = max(lens)
        qprob = None
        if self.record_draft_probs and prop is not None and n_max > 0:
            # q(d_k): each draft's probability under the distribution it was drawn from.
            logq = prop.draft_logits[:, :n_max].float().log_softmax(-1)
            qprob = logq.gather(-1, prop.tokens[:, :n_max, None].long())[..., 0].exp()
        t1 = time.perf_counter()
        # One target forward over [anchor, d_1..d_n] per request, then lossless verification.
        dev, width = anchor.device, n_max + 1
        tokens = anchor[:, None]
        if n_max > 0:
            tokens = torch.cat([tokens, prop.tokens[:, :n_max]], dim=1)
        fwd = runner.forward_packed(tokens, [n + 1 for n in lens])
        indptr = torch.tensor(list(itertools.accumulate(lens, initial=0)), dtype=torch.int32)
        drafts, q = tokens[:, 1:], None
        if n_max == 0:  # nothing to verify: the anchor rows alone give one token each
            drafts = drafts.reshape(-1)
        elif any(n != n_max for n in lens):  # ragged: keep each request's first lens[b] drafts
            lens_t = torch.tensor(lens, device=dev)
            d_mask = torch.arange(n_max, device=dev)[None, :] < lens_t[:, None]
            drafts, q = drafts[d_mask], prop.draft_logits[:, :n_max][d_mask]
        else:
            q = prop.draft_logits[:, :n_max]
            drafts, q = drafts.reshape(-1), q.reshape(-1, q.shape[-1])
        res = verify_batch(
            fwd.logits.float(),
            drafts,
            indptr.to(dev),
            draft_logits=q,
            max_depth=n_max,
            **verify_args,
        )
        read = read_round(res.tokens, conf if conf_h is None else None)
        keep = [a + 1 for a in read.accepted]
        runner.accept(keep)
        emitted = res.tokens[:, :width].long().clamp_min(0)
        self.drafter.commit(state, fwd.features, emitted, res.accept_len.long() + 1)
        if conf_h is not None:
            read = read._replace(confidence=conf_h)
        return res, read, lens, t1, qprob

    def _tree_round(self, runner, state, anchor, verify_args):
        """Draft a static tree (Eagle3), verify it with tree attention, keep the accepted path."""
        tree, bsz = self.tree, anchor.shape[0]
        n, depth = tree.num_nodes, tree.max_depth
        nodes = self.drafter.propose_tree(state, anchor, tree)
        t1 = time.perf_counter()
        tokens = torch.cat([anchor[:, None], nodes], dim=1)
        fwd = runner.forward_tree(tokens, tree.depth, tree.ancestors)
        dev = anchor.device
        res = verify_batch(
            fwd.logits.reshape(bsz * (n + 1), -1).float(),
            nodes.reshape(-1),
            torch.arange(bsz + 1, dtype=torch.int32, device=dev) * n,
            parents=tree.parents.to(dev).repeat(bsz),
            max_depth=depth,
            **verify_args,
        )
        read = read_round(res.tokens, None)
        acc = res.accept_len.long()
        on_path = torch.arange(depth, device=dev)[None, :] < acc[:, None]
        rows = torch.cat([torch.zeros_like(acc)[:, None], 1 + res.path.long().clamp_min(0)], 1)
        keep = torch.zeros(bsz, n + 1, dtype=torch.bool, device=dev)
        keep[:, 0] = True
        batch_idx = torch.arange(bsz, device=dev)[:, None].expand(-1, depth)
        keep[batch_idx[on_path], rows[:, 1:][on_path]] = True  # the anchor and the accepted path
        runner.accept_mask(keep)
        feats = fwd.features.gather(1, rows[:, :, None].expand(-1, -1, fwd.features.shape[-1]))
        self.drafter.commit(state, feats, res.tokens[:, : depth + 1].long().clamp_min(0), acc + 1)
        return res, read, [n] * bsz, [depth] * bsz, t1

    def _verify_lengths(
        self, conf: torch.Tensor | None, n_max: int, caps: list[int]
    ) -> tuple[list[int], list[list[float]] | None]:
        """Per-request verify lengths from the scheduler/threshold (default: every draft, up to
        ``caps``), and the confidences on the host when choosing them needed them there."""
        if conf is None or (self.scheduler is None and self.confidence_threshold is None):
            return list(caps), None
        conf = conf[:, :n_max]
        if self.confidence_threshold is not None:
            surv = torch.cumprod(conf, dim=1)
            lengths = (surv >= self.confidence_threshold).long().cumprod(1).sum(1)
            # One read: the lengths (exact in float32) ride along with the confidences.
            host = torch.cat([lengths.to(conf.dtype)[:, None], conf], dim=1).tolist()
            lens = [int(h[0]) for h in host]
            conf_h = [h[1:] for h in host]
        else:
            host_conf = conf.cpu()
            sched = getattr(self.scheduler, "schedule", self.scheduler)
            out = torch.as_tensor(sched(host_conf))
            if out.shape != (conf.shape[0],):
                raise ValueError(
                    f"scheduler: expected lengths of shape ({conf.shape[0]},), got "
                    f"{tuple(out.shape)}"
                )
            lens = [min(max(int(x), 0), n_max) for x in out.tolist()]
            conf_h = host_conf.tolist()
        return [min(n, c) for n, c in zip(lens, caps, strict=True)], conf_h
