"""The zoo's target: a small Qwen3-architecture causal LM trained on the stdlib corpus.

Training is resumable and exact: every ``checkpoint_every`` steps (and when the time budget runs
out) model, optimizer and step are written atomically; batches are drawn from an RNG keyed by the
step, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dspark.training.trainer import warmup_cosine
from dspark.utils.checkpoint import checkpoint_dir, verify_checkpoint
from dspark.utils.io import atomic_write_json

__all__ = ["TargetTrainConfig", "build_optimizer", "qwen3_config", "tokenize_docs", "train_target"]

STATE = "state.pt"


@dataclass
class TargetTrainConfig:
    vocab_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 64
    intermediate_size: int = 768
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    total_steps: int = 2000
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50


def qwen3_config(cfg: TargetTrainConfig, eos_token_id: int = 0):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=4 * cfg.seq_len,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )


def tokenize_docs(docs: list[str], tokenizer, eos_id: int) -> np.ndarray:
    """One uint16 token stream: documents separated by end-of-text."""
    ids: list[int] = []
    for i in range(0, len(docs), 256):
        for enc in tokenizer(docs[i : i + 256], add_special_tokens=False)["input_ids"]:
            ids.extend(enc)
            ids.append(eos_id)
    return np.asarray(ids, dtype=np.uint16)


def build_optimizer(model: torch.nn.Module, cfg: TargetTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (the zoo LMs' recipe)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )


def _batch(tokens: np.ndarray, step: int, cfg: TargetTrainConfig) -> torch.Tensor:
    rng = np.random.default_rng([cfg.seed, step])
    starts = rng.integers(0, len(tokens) - cfg.seq_len - 1, size=cfg.batch_size)
    return torch.from_numpy(
        np.stack([tokens[s : s + cfg.seq_len + 1] for s in starts]).astype(np.int64)
    )


def train_target(
    out_dir: str | Path,
    cfg: TargetTrainConfig,
    tokens: np.ndarray,
    *,
    budget_seconds: float | None = None,
    stop_after: int | None = None,
    eos_token_id: int = 0,
    progress: bool = True,
) -> dict:
    """Train (or resume training) the zoo target; returns the training record.

    Stops early when ``budget_seconds`` have passed or after ``stop_after`` steps in this call;
    calling again resumes from the checkpoint.

    Writes ``out_dir/checkpoint/`` (resume state: ``state.pt`` and its checksums) while training
    and, once ``total_steps`` are done, the final model (``save_pretrained``, bfloat16) and
    ``train_record.json``.
    """
    from tqdm.auto import tqdm
    from transformers import Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoint"
    legacy = out / "checkpoint.pt"  # written before checkpoints were checksummed directories
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(qwen3_config(cfg, eos_token_id))
    opt = build_optimizer(model, cfg)
    step, losses, elapsed = 0, [], 0.0
    ckpt_path = verify_checkpoint(ckpt_dir, (STATE,)) / STATE if ckpt_dir.exists() else legacy
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("config") != asdict(cfg):
            raise ValueError(
                f"{ckpt_path}: checkpoint was written with another config; "
                "use a new output directory"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, losses, elapsed = state["step"], state["losses"], state["elapsed"]

    def save() -> None:
        state = {
            "config": asdict(cfg),
            "model": model.state_dict(),
            "optim": opt.state_dict(),
            "step": step,
            "losses": losses,
            "elapsed": elapsed,
        }
        with checkpoint_dir(ckpt_dir) as d:
            torch.save(state, d / STATE)
        legacy.unlink(missing_ok=True)

    t0 = time.monotonic()
    last = cfg.total_steps if stop_after is None else min(cfg.total_steps, step + stop_after)
    model.train()
    bar = tqdm(total=cfg.total_steps, initial=step, disable=not progress, desc="zoo target")
    while step < last:
        if budget_seconds is not None and time.monotonic() - t0 > budget_seconds:
            break
        for g in opt.param_groups:
            g["lr"] = cfg.lr * warmup_cosine(step, cfg.total_steps, cfg.warmup, cfg.min_lr_ratio)
        batch = _batch(tokens, step, cfg)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone(), use_cache=False).loss
        # labels are shifted inside the model: predicting batch[:, 1:] from batch[:, :-1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if step % cfg.checkpoint_every == 0:
            elapsed += time.monotonic() - t0
            t0 = time.monotonic()
            save()
    bar.close()
    elapsed += time.monotonic() - t0
    save()
    record = {
        "config": asdict(cfg),
        "steps": step,
        "tokens_seen": step * cfg.batch_size * cfg.seq_len,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "train_seconds": elapsed,
        "done": step >= cfg.total_steps,
    }
    if record["done"]:
        model.to(torch.bfloat16).save_pretrained(out / "model", safe_serialization=True)
        atomic_write_json(
            out / "train_record.json",
            {**record, "loss_curve": losses[:: max(1, len(losses) // 200)]},
        )
    return record
