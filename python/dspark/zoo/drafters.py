"""The zoo's drafters: on-policy training data sampled from the zoo target, then DSpark, DFlash and
Eagle3 trained against it with :class:`dspark.training.Trainer`, plus a small plain LM that serves
as the ``assistant_model`` peer (Hugging Face assisted generation).

Training data follows the papers' recipe: the target *answers* prompts itself (here: continues
windows of the training corpus at temperature 1), so drafters learn the distribution they will be
verified against. Data shards, drafter runs and the assistant are each resumable.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dspark.utils.io import atomic_write_json, atomic_write_npz

__all__ = [
    "DRAFTER_RECIPES",
    "DataConfig",
    "DrafterTrainConfig",
    "build_feature_cache",
    "generate_data",
    "load_samples",
    "train_zoo_drafter",
]

# Drafter geometry for the zoo (d=256 targets: 12 layers in zoo v2, 6 from `dspark zoo build`).
# DSpark and DFlash share the parallel backbone (2 layers); Eagle3 is the reference's single
# autoregressive layer.
DRAFTER_RECIPES: dict[str, dict[str, Any]] = {
    "dspark": {"num_layers": 2, "block_size": 7, "markov_rank": 64, "confidence_head": True},
    "dflash": {"num_layers": 2, "block_size": 7},
    "eagle3": {"num_layers": 1, "block_size": 7},
}


@dataclass
class DataConfig:
    """Target-sampled training data: ``num_samples`` corpus windows of ``prompt_tokens`` tokens,
    each continued by the target for up to ``new_tokens`` tokens at ``temperature`` (0: greedy)."""

    num_samples: int = 4096
    prompt_tokens: int = 96
    new_tokens: int = 192
    temperature: float = 1.0
    batch_size: int = 64
    shard_size: int = 256
    seed: int = 1


@dataclass
class DrafterTrainConfig:
    """Optimisation settings shared by the three zoo drafters (see :class:`TrainConfig`)."""

    steps: int = 320
    global_batch: int = 16
    micro_batch: int = 1  # one sequence per forward: block masks stay per-sequence (small)
    num_anchors: int = 48  # blocks per sequence (~1/4 of the answer positions)
    lr: float = 1e-3
    warmup_ratio: float = 0.04
    min_lr_ratio: float = 0.1
    save_every: int = 25
    seed: int = 42
    recipes: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DRAFTER_RECIPES))


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _load_shard(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with np.load(path) as f:
        ids, lengths, prompt_len, digest = (
            f["ids"],
            f["lengths"],
            int(f["prompt_len"]),
            str(f["sha256"]),
        )
    if _sha256(ids) + _sha256(lengths) != digest:
        raise ValueError(f"{path}: checksum mismatch (corrupt data shard); delete it to rebuild")
    return ids, lengths, prompt_len


def generate_data(
    data_dir: str | Path,
    target: Any,
    tokens: np.ndarray,
    cfg: DataConfig,
    *,
    eos_token_id: int,
    budget_seconds: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample target continuations of corpus windows into ``data_dir/shard-NNNNN.npz``.

    Each shard is written atomically with a checksum; existing valid shards are kept, so a
    stopped run resumes. Shard ``i`` draws its windows and samples from seeds ``(seed, i)``, so
    the data does not depend on where a run was interrupted. Returns a summary record (also
    written to ``data_dir/data_record.json`` once every shard exists).
    """
    from tqdm.auto import tqdm

    if cfg.temperature < 0:
        raise ValueError(f"cfg.temperature: expected >= 0 (0 = greedy), got {cfg.temperature}")
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_shards = -(-cfg.num_samples // cfg.shard_size)
    t0 = time.monotonic()
    target.eval()
    bar = tqdm(total=cfg.num_samples, disable=not progress, desc="zoo data", unit="seq")
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": cfg.temperature, "top_k": 0, "top_p": 1.0}
        if cfg.temperature > 0
        else {"do_sample": False}
    )
    for s in range(num_shards):
        path = out / f"shard-{s:05d}.npz"
        n = min(cfg.shard_size, cfg.num_samples - s * cfg.shard_size)
        if path.exists():
            _load_shard(path)  # validate
            bar.update(n)
            continue
        if budget_seconds is not None and time.monotonic() - t0 > budget_seconds:
            break
        rng = np.random.default_rng([cfg.seed, s])
        starts = rng.integers(0, len(tokens) - cfg.prompt_tokens - 1, size=n)
        prompts = np.stack([tokens[a : a + cfg.prompt_tokens] for a in starts]).astype(np.int64)
        torch.manual_seed(cfg.seed * 1_000_003 + s)
        rows = []
        for b in range(0, n, cfg.batch_size):
            x = torch.from_numpy(prompts[b : b + cfg.batch_size])
            with torch.inference_mode():
                y = target.generate(
                    input_ids=x,
                    attention_mask=torch.ones_like(x),
                    **sampling,
                    max_new_tokens=cfg.new_tokens,
                    min_new_tokens=1,
                    pad_token_id=eos_token_id,
                    eos_token_id=eos_token_id,
                )
            rows.append(y.numpy())
            bar.update(x.shape[0])
        gen = np.concatenate(rows)
        width = cfg.prompt_tokens + cfg.new_tokens
        ids = np.full((n, width), eos_token_id, dtype=np.int64)
        ids[:, : gen.shape[1]] = gen
        lengths = np.full(n, gen.shape[1], dtype=np.int64)
        for i in range(n):  # keep the first end-of-text (the drafter learns to predict it)
            hit = np.nonzero(ids[i, cfg.prompt_tokens :] == eos_token_id)[0]
            if hit.size:
                lengths[i] = cfg.prompt_tokens + hit[0] + 1
        ids = ids.astype(np.uint16)
        atomic_write_npz(
            path,
            ids=ids,
            lengths=lengths,
            prompt_len=cfg.prompt_tokens,
            sha256=_sha256(ids) + _sha256(lengths),
        )
    bar.close()
    done = all((out / f"shard-{s:05d}.npz").exists() for s in range(num_shards))
    record = {"config": asdict(cfg), "done": done, "shards": num_shards}
    if done:
        samples = load_samples(out)
        record["answer_tokens"] = int(sum(int(s.loss_mask.sum()) for s in samples))
        record["total_tokens"] = int(sum(len(s.input_ids) for s in samples))
        atomic_write_json(out / "data_record.json", record)
    return record


def load_samples(data_dir: str | Path) -> list[Any]:
    """All shards as :class:`dspark.training.data.TokenizedSample` (loss on the answers)."""
    from dspark.training.data import TokenizedSample

    paths = sorted(Path(data_dir).glob("shard-*.npz"))
    if not paths:
        raise FileNotFoundError(f"data_dir: no shard-*.npz files in {data_dir}")
    samples = []
    for p in paths:
        ids, lengths, prompt_len = _load_shard(p)
        for row, n in zip(ids, lengths, strict=True):
            x = torch.from_numpy(row[:n].astype(np.int64))
            mask = torch.zeros(int(n), dtype=torch.bool)
            mask[prompt_len:] = True
            samples.append(TokenizedSample(x, mask))
    return samples


def build_feature_cache(
    cache_dir: str | Path,
    target: Any,
    samples: list[Any],
    feature_layers: list[int],
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the target once over ``samples`` and store their features (offline training).

    One pass of the target replaces a target forward in every training step of every drafter
    (they share the feature layers). The cache is written beside ``cache_dir`` and swapped in
    whole (:class:`dspark.training.feature_cache.CacheWriter`); an existing complete cache is
    kept. Returns the cache manifest.
    """
    from tqdm.auto import tqdm

    from dspark.training.feature_cache import MANIFEST, CacheWriter, TargetCache, target_outputs

    dest = Path(cache_dir)
    if (dest / MANIFEST).exists():
        return TargetCache(dest).manifest
    writer = CacheWriter(dest, target, feature_layers, shard_tokens=1 << 18)
    # Similar lengths batched together: little padding (right-padded, masked).
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].input_ids))
    target.eval()
    bar = tqdm(total=len(samples), disable=not progress, desc="zoo cache", unit="seq")
    for b in range(0, len(order), batch_size):
        group = [samples[i] for i in order[b : b + batch_size]]
        width = max(len(s.input_ids) for s in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        att = torch.zeros(len(group), width, dtype=torch.long)
        for r, s in enumerate(group):
            ids[r, : len(s.input_ids)] = s.input_ids
            att[r, : len(s.input_ids)] = 1
        feats, last = target_outputs(target, ids, att, feature_layers)
        for r, (i, s) in enumerate(zip(order[b : b + batch_size], group, strict=True)):
            n = len(s.input_ids)
            writer.add(s.input_ids, s.loss_mask, feats[r, :n], last[r, :n], sample_id=i)
        bar.update(len(group))
    bar.close()
    return writer.close()


def train_zoo_drafter(
    run_dir: str | Path,
    kind: str,
    target: Any,
    target_dir: str | Path,
    samples: list[Any] | None,
    cfg: DrafterTrainConfig,
    *,
    budget_seconds: float | None = None,
    progress: bool = True,
    mask_token_id: int | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or resume) one zoo drafter with :class:`dspark.training.Trainer`.

    Online (target features computed every step from ``samples``) or, with ``cache_dir``, offline
    from a cache built by :func:`build_feature_cache`. Checkpoints go to ``run_dir/run``; once all
    steps are done the final drafter is written in bfloat16 to ``run_dir/model`` with
    ``train_record.json`` (tokens, steps, loss, estimated per-position acceptance). Returns the
    record (``done`` False when the budget ran out).
    """
    if (samples is None) == (cache_dir is None):
        raise ValueError("samples/cache_dir: expected exactly one (online or offline training)")
    from dspark.models.config import DrafterConfig
    from dspark.training import OnlineSource, TrainConfig, Trainer

    run = Path(run_dir)
    recipe = dict(cfg.recipes[kind])
    if mask_token_id is not None:  # the tokenizer's unused <|mask|> row
        recipe.setdefault("mask_token_id", int(mask_token_id))
    tc = TrainConfig(
        kind=kind,
        target=str(target_dir),
        data=None if cache_dir is not None else str(run / "samples"),  # informational
        cache=None if cache_dir is None else str(cache_dir),
        output_dir=str(run / "run"),
        drafter=recipe,
        max_steps=cfg.steps,
        global_batch=cfg.global_batch,
        micro_batch=cfg.micro_batch,
        num_anchors=cfg.num_anchors,
        lr=cfg.lr,
        warmup_ratio=cfg.warmup_ratio,
        min_lr_ratio=cfg.min_lr_ratio,
        save_every=cfg.save_every,
        log_every=5,
        seed=cfg.seed,
        precision="fp32",
        progress=progress,
    )
    layers = DrafterConfig.for_target(kind, target.config, **recipe).feature_layers
    source = None if samples is None else OnlineSource(samples, target, layers)
    trainer = Trainer(tc, target=target, source=source)
    trainer.run(budget_seconds=budget_seconds)
    log = [json.loads(x) for x in (run / "run" / "log.jsonl").read_text().splitlines()]
    done = trainer.step >= trainer.total_steps
    tail = log[-10:]
    record = {
        "kind": kind,
        "drafter": recipe,
        "train": {k: v for k, v in asdict(cfg).items() if k != "recipes"},
        "steps": trainer.step,
        "samples": len(samples) if samples is not None else None,
        "source": "online" if cache_dir is None else "target cache",
        # tokens per step are logged every log_every steps: the total is estimated from them
        "tokens_seen": int(np.mean([r["tokens"] for r in log]) * trainer.step) if log else 0,
        "final_loss": float(np.mean([r["loss"] for r in tail])) if tail else None,
        "final_accept_estimate": tail[-1]["accept"] if tail else None,
        "final_tau_estimate": float(np.mean([r["tau"] for r in tail])) if tail else None,
        "done": done,
        "loss_curve": [[r["step"], round(r["loss"], 4)] for r in log],
    }
    if done:
        final = trainer.drafter.to(torch.bfloat16)
        final.save_pretrained(run / "model")
        atomic_write_json(run / "model" / "train_record.json", record)
    return record
