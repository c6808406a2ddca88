"""Drafter training loop: data parallel over torch.distributed, exact resume, JSON-lines log.

Gradients are accumulated as loss *numerators*; after the last micro-step they are summed over
processes and divided by the global weight sum, so every optimizer step equals the one a single
process would take on the whole global batch (up to float summation order), for any world size
and accumulation count.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from dspark.models import Drafter, block_targets, build_drafter, load_target
from dspark.models.base import CONFIG_NAME, WEIGHTS_NAME
from dspark.training.batching import pack, sample_anchors, step_samples, steps_per_epoch
from dspark.training.config import TrainConfig
from dspark.training.losses import block_loss, eagle3_loss
from dspark.utils.checkpoint import checkpoint_dir, newest_good
from dspark.utils.io import atomic_write, truncate_jsonl

__all__ = ["OnlineSource", "Trainer", "train", "warmup_cosine"]

LATEST = "latest"
TRAINER_STATE = "trainer.pt"


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup to 1 over ``warmup`` steps, then cosine from 1 (the warmup
    peak, unlike the reference's handoff) to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


class OnlineSource:
    """Samples whose target features are computed on demand (no cache).

    Parameters
    ----------
    samples : list of TokenizedSample
    target : PreTrainedModel
    feature_layers : list of int
    """

    def __init__(self, samples: list[Any], target: Any, feature_layers: list[int]) -> None:
        self.samples, self.target, self.layers = samples, target, feature_layers

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from dspark.training.feature_cache import target_outputs

        s = self.samples[i]
        dev = self.target.get_input_embeddings().weight.device
        feat, last = target_outputs(self.target, s.input_ids[None].to(dev), None, self.layers)
        return {
            "input_ids": s.input_ids,
            "loss_mask": s.loss_mask,
            "features": feat[0].float().cpu(),
            "last_hidden": last[0].float().cpu(),
        }


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """One training run (see :class:`TrainConfig`); call :meth:`run`.

    Parameters
    ----------
    config : TrainConfig
    target : PreTrainedModel, optional
        Already loaded target (default: ``load_target(config.target)``).
    source : sequence of sample dicts, optional
        Overrides the cache/online source (tests).
    verify_cache : bool
        Check every shard of ``config.cache`` against its SHA-256 before training (False skips
        the extra read of the whole cache).
    """

    def __init__(
        self,
        config: TrainConfig,
        target: Any = None,
        source: Any = None,
        *,
        verify_cache: bool = True,
    ) -> None:
        self.cfg = config
        self.verify_cache = verify_cache
        self.rank, self.world = _dist_info()
        per_step = self.world * config.micro_batch
        if config.global_batch % per_step:
            raise ValueError(
                f"global_batch: expected a multiple of world_size * micro_batch = "
                f"{self.world} * {config.micro_batch}, got {config.global_batch}"
            )
        self.accum = config.global_batch // per_step
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        self.target = (
            target if target is not None else load_target(config.target, device=self.device)
        )
        self.target.requires_grad_(False)
        torch.manual_seed(config.seed)  # same initial weights on every process
        self.drafter = build_drafter(config.kind, self.target, **config.drafter).float()
        self.fsdp = config.fsdp and self.world > 1
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

            # One FSDP unit: layer methods other than forward (context_kv, ttt_step) are called
            # directly, so per-layer units would see sharded weights.
            # Heads run again inside the checkpointed loss chunks (after forward_train), so the
            # parameters stay gathered until backward.
            fully_shard(self.drafter, reshard_after_forward=False)
            register_fsdp_forward_method(self.drafter, "forward_train")
        self.layers = self.drafter.config.feature_layers
        self.source = source if source is not None else self._make_source()
        self.spe = steps_per_epoch(len(self.source), config.global_batch)
        self.total_steps = config.max_steps or self.spe * config.epochs
        self.params = [p for p in self.drafter.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            self.params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        self.warmup = int(config.warmup_ratio * self.total_steps)
        self.step = 0
        self.out = Path(config.output_dir)
        use_bf16 = config.precision == "bf16" or (
            config.precision == "auto" and self.device.type == "cuda"
        )
        self.autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=use_bf16)

    def _make_source(self) -> Any:
        cfg = self.cfg
        if cfg.cache is not None:
            from dspark.training.feature_cache import TargetCache

            cache = TargetCache(cfg.cache, verify=self.verify_cache)
            cache.check_compatible(self.target, self.layers)
            return cache
        from transformers import AutoTokenizer

        from dspark.training.data import load_conversations, tokenize_conversation

        tok = AutoTokenizer.from_pretrained(cfg.target, local_files_only=True)
        samples = [
            tokenize_conversation(
                tok, c, system_prompt=cfg.system_prompt, max_length=cfg.max_length
            )
            for c in load_conversations(cfg.data)
        ]
        return OnlineSource(samples, self.target, self.layers)

    # --- checkpoints --------------------------------------------------------------------------
    def save(self) -> Path:
        """Write ``step-N/`` (drafter + optimizer + RNG) atomically, then point ``latest`` at it."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        name = f"step-{self.step:08d}"
        # Parameter-name keyed, full (unsharded) tensors: loadable by any world size and with or
        # without FSDP. Collective under FSDP, so every rank calls it.
        opts = StateDictOptions(full_state_dict=True, cpu_offload=self.fsdp)
        model_sd = get_model_state_dict(self.drafter, options=opts)
        optim_sd = get_optimizer_state_dict(self.drafter, self.opt, options=opts)
        if self.rank == 0:
            state = {
                "step": self.step,
                "optimizer": optim_sd,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                },
                "config": self.cfg.to_dict(),
                "world_size": self.world,
            }

            plain = self.drafter
            if self.fsdp:
                plain = build_drafter(self.cfg.kind, self.target, **self.cfg.drafter).float()
                plain.load_state_dict(model_sd)

            with checkpoint_dir(self.out / name) as d:
                plain.save_pretrained(d)
                torch.save(state, d / TRAINER_STATE)
            atomic_write(self.out / LATEST, lambda p: Path(p).write_text(name))
        if self.world > 1:
            dist.barrier()
        return self.out / name

    def resume(self) -> bool:
        """Load the newest good checkpoint in ``output_dir`` if there is one (any world size)."""
        cands = sorted(self.out.glob("step-*[0-9]"), reverse=True) if self.out.is_dir() else []
        ckpt = newest_good(cands, (TRAINER_STATE, CONFIG_NAME, WEIGHTS_NAME))
        if ckpt is None:
            return False
        state = torch.load(ckpt / TRAINER_STATE, weights_only=False)
        if state["config"]["kind"] != self.cfg.kind:
            raise ValueError(
                f"output_dir: checkpoint {ckpt} is a {state['config']['kind']!r} run, the config "
                f"trains {self.cfg.kind!r}"
            )
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        loaded = Drafter.from_pretrained(ckpt, self.target, verify=False).float()  # verified
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.drafter, loaded.state_dict(), options=opts)
        set_optimizer_state_dict(self.drafter, self.opt, state["optimizer"], options=opts)
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        return True

    # --- one optimizer step -------------------------------------------------------------------
    def _micro_loss(self, idx: list[int]) -> tuple[Any, int]:
        cfg, d = self.cfg, self.drafter
        samples = [self.source[i] for i in idx]
        anchors = [
            sample_anchors(s["loss_mask"], cfg.num_anchors, cfg.seed, self.step, i)
            for s, i in zip(samples, idx, strict=True)
        ]
        b = pack(samples, anchors).to(self.device, torch.float32)
        with self.autocast:
            if d.kind == "eagle3":
                out = d.forward_train(
                    b.features, b.input_ids, b.cu_seqlens, query_chunk=256, heads=False
                )
                parts = eagle3_loss(
                    d,
                    out,
                    b.loss_mask,
                    b.last_hidden,
                    step_decay=cfg.step_decay,
                    chunk=cfg.loss_chunk * 4,
                )
            else:
                empty = b.anchor_index.numel() == 0
                if empty:  # a weightless dummy block keeps collectives (FSDP) in step
                    b.anchor_index = torch.zeros(1, dtype=torch.long, device=self.device)
                g = d.config.block_size
                labels, valid = block_targets(
                    b.input_ids, b.cu_seqlens, b.anchor_index, g, b.loss_mask
                )
                if empty:
                    valid = torch.zeros_like(valid)
                out = d.forward_train(
                    b.features,
                    b.input_ids,
                    b.cu_seqlens,
                    b.anchor_index,
                    teacher_tokens=labels,
                    block_chunk=cfg.block_chunk,
                    heads=False,  # logits per loss chunk: no whole (N, G, V) tensor
                )
                parts = block_loss(
                    d,
                    out,
                    b.anchor_index,
                    labels,
                    valid,
                    b.last_hidden,
                    alphas=cfg.alphas,
                    chunk=cfg.loss_chunk,
                    input_ids=b.input_ids,
                )
        return parts, b.num_tokens

    def train_step(self) -> dict[str, Any]:
        """Run one optimizer step (all micro-batches of this process); returns its metrics."""
        cfg = self.cfg
        idx = step_samples(len(self.source), cfg.global_batch, cfg.seed, self.step)
        mine = idx[self.rank :: self.world]
        for p in self.params:
            p.grad = None
        g = self.drafter.config.block_size
        stats = torch.zeros(2 + 3 + 2 * g + 1, dtype=torch.float64)
        for m in range(self.accum):
            parts, ntok = self._micro_loss(mine[m * cfg.micro_batch : (m + 1) * cfg.micro_batch])
            stats[-1] += ntok
            parts.total.backward()
            terms = list(parts.terms.values()) + [torch.zeros(())] * 3
            stats[0] += float(parts.total.detach())
            stats[1] += float(parts.weight)
            stats[2:5] += torch.tensor([float(t) for t in terms[:3]], dtype=torch.float64)
            stats[5 : 5 + g] += parts.accept_sum.double().cpu()
            stats[5 + g : 5 + 2 * g] += parts.accept_count.double().cpu()
        if self.world > 1:
            dist.all_reduce(stats)
        denom = max(float(stats[1]), 1e-12)
        if self.fsdp:
            # FSDP reduce-scatters the *mean* over processes: scale the mean back to the sum.
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(self.world / denom)
        else:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            flat = torch.cat([x.flatten() for x in grads])
            if self.world > 1:
                dist.all_reduce(flat)
            off = 0
            for p in self.params:
                n = p.numel()
                p.grad = (flat[off : off + n] / denom).view_as(p).to(p.dtype)
                off += n
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        if hasattr(gnorm, "full_tensor"):
            gnorm = gnorm.full_tensor()
        lr = cfg.lr * warmup_cosine(self.step, self.total_steps, self.warmup, cfg.min_lr_ratio)
        for grp in self.opt.param_groups:
            grp["lr"] = lr
        self.opt.step()
        self.step += 1
        acc = (stats[5 : 5 + g] / stats[5 + g : 5 + 2 * g].clamp_min(1)).tolist()
        names = ("ce", "tv", "conf") if self.drafter.kind != "eagle3" else ("ce", "acc0", "_")
        rec = {
            "step": self.step,
            "lr": lr,
            "loss": float(stats[0]) / denom,
            **{n: float(stats[2 + i]) / denom for i, n in enumerate(names) if n != "_"},
            "grad_norm": float(gnorm),
            "accept": [round(a, 4) for a in acc],
            "tau": 1 + sum(math.prod(acc[: k + 1]) for k in range(g)),
            "tokens": int(stats[-1]),
        }
        return rec

    def _out_of_time(self, t_start: float, budget: float) -> bool:
        """Rank 0's clock decides for every process (their clocks differ)."""
        flag = torch.tensor([float(time.monotonic() - t_start > budget)], device=self.device)
        if self.world > 1:
            dist.broadcast(flag, 0)
        return bool(flag.item())

    def run(
        self, stop_after: int | None = None, budget_seconds: float | None = None
    ) -> list[dict[str, Any]]:
        """Train to ``total_steps`` (resuming if possible); returns the metrics of each step.

        ``stop_after`` ends the run after that step; ``budget_seconds`` ends it (after writing a
        checkpoint) once that much wall time has passed in this call. A later call resumes."""
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        self.resume()
        log_path = self.out / "log.jsonl"
        if self.rank == 0:
            truncate_jsonl(log_path, lambda rec: int(rec["step"]) <= self.step)
        log = log_path.open("a") if self.rank == 0 else None
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=self.rank != 0 or not self.cfg.progress,
            desc=f"train {self.cfg.kind}",
        )
        history = []
        t_start = time.monotonic()
        try:
            end = self.total_steps if stop_after is None else min(stop_after, self.total_steps)
            while self.step < end:
                if budget_seconds is not None and self._out_of_time(t_start, budget_seconds):
                    if self.step % self.cfg.save_every:  # the last step was not saved yet
                        self.save()
                    break
                t0 = time.perf_counter()
                rec = self.train_step()
                rec["tokens_per_s"] = rec["tokens"] / max(time.perf_counter() - t0, 1e-9)
                history.append(rec)
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", tau=f"{rec['tau']:.2f}")
                if log is not None and (self.step % self.cfg.log_every == 0 or self.step == 1):
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if self.step % self.cfg.save_every == 0 or self.step == self.total_steps:
                    self.save()
        finally:
            bar.close()
            if log is not None:
                log.close()
        return history


def train(
    config: TrainConfig, target: Any = None, source: Any = None, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """Run training; initialises torch.distributed from torchrun's environment when present
    (gloo on CPU, NCCL on GPU). ``stop_after`` ends the run after that step (a time-limited
    job); the schedule still spans the whole run, and a later call resumes."""
    own = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        own = True
    try:
        return Trainer(config, target, source).run(stop_after)
    finally:
        if own:
            dist.destroy_process_group()
