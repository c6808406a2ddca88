"""Building the zoo, every stage resumable under a time budget.

``dspark zoo target`` runs the first stages, ``dspark zoo build`` all of them:
corpus + tokenizer -> target LM -> target-sampled training data -> DSpark, DFlash, Eagle3 ->
assistant LM (the assisted-generation peer). ``dspark zoo export`` copies the results into the
package (:mod:`dspark.zoo.package`).

Layout of the output directory::

    tokenizer/          tokenizer.json (+ config), chat template = concatenated turns
    tokens.npz          train token stream (uint16) and its SHA-256
    prompts/{code,prose}.jsonl   held-out prompts ({"turns": [...]})
    target/checkpoint/, target/model/, target/train_record.json
    data/shard-NNNNN.npz, data/data_record.json
    drafters/{dspark,dflash,eagle3}/run/ (checkpoints), .../model/ (final, bf16)
    assistant/checkpoint/, assistant/model/, assistant/train_record.json
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from dspark.utils.io import atomic_write_npz, load_json
from dspark.zoo.corpus import build_corpus
from dspark.zoo.drafters import (
    DataConfig,
    DrafterTrainConfig,
    generate_data,
    load_samples,
    train_zoo_drafter,
)
from dspark.zoo.target_lm import TargetTrainConfig, tokenize_docs, train_target
from dspark.zoo.tokenizer import load_tokenizer, train_tokenizer

__all__ = ["ASSISTANT_CONFIG", "build_target", "build_zoo", "load_tokens"]

# The assisted-generation peer: the target's recipe with 2 layers and fewer steps.
ASSISTANT_CONFIG = TargetTrainConfig(num_layers=2, total_steps=600)


def load_tokens(path: Path) -> np.ndarray:
    """Load the token stream and check its checksum (a truncated or edited file is an error)."""
    with np.load(path) as f:
        tokens, digest = f["tokens"], str(f["sha256"])
    if hashlib.sha256(tokens.tobytes()).hexdigest() != digest:
        raise ValueError(f"{path}: checksum mismatch (corrupt token cache); delete it to rebuild")
    return tokens


def _save_tokens(path: Path, tokens: np.ndarray) -> None:
    atomic_write_npz(path, tokens=tokens, sha256=hashlib.sha256(tokens.tobytes()).hexdigest())


def build_target(
    out_dir: str | Path,
    *,
    cfg: TargetTrainConfig | None = None,
    budget_seconds: float | None = None,
    max_files: int | None = None,
    progress: bool = True,
) -> dict:
    """Corpus -> tokenizer -> token stream -> target training (each stage reused when present)."""
    cfg = cfg or TargetTrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = None
    if not (out / "tokenizer" / "tokenizer.json").exists() or not (out / "tokens.npz").exists():
        # Toy builds (max_files) hold out more files so both prompt sets are non-empty.
        corpus = build_corpus(
            max_files=max_files, heldout_fraction=0.05 if max_files is None else 0.3
        )
        texts = corpus.train["code"] + corpus.train["prose"]
        tok = train_tokenizer(texts, out / "tokenizer", vocab_size=cfg.vocab_size)
        eos = tok.convert_tokens_to_ids("<|endoftext|>")
        _save_tokens(out / "tokens.npz", tokenize_docs(texts, tok, eos))
        (out / "prompts").mkdir(exist_ok=True)
        for domain in ("code", "prose"):
            corpus.write_prompts(out / "prompts" / f"{domain}.jsonl", domain, num=32, chars=400)
    tok = load_tokenizer(out / "tokenizer")
    if len(tok) > cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} tokens but cfg.vocab_size is {cfg.vocab_size}")
    tokens = load_tokens(out / "tokens.npz")
    record = train_target(
        out / "target",
        cfg,
        tokens,
        budget_seconds=budget_seconds,
        eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        progress=progress,
    )
    record["train_tokens_available"] = len(tokens)
    (out / "target" / "status.json").write_text(json.dumps(record, indent=1))
    return record


def build_zoo(
    out_dir: str | Path,
    *,
    budget_seconds: float | None = None,
    target_cfg: TargetTrainConfig | None = None,
    data_cfg: DataConfig | None = None,
    drafter_cfg: DrafterTrainConfig | None = None,
    assistant_cfg: TargetTrainConfig | None = None,
    kinds: tuple[str, ...] = ("dspark", "dflash", "eagle3"),
    max_files: int | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) every stage; stops cleanly when ``budget_seconds`` run out.

    Returns ``{"done": bool, "stages": {name: record}}``; rerun to continue an unfinished build.
    """
    import torch

    from dspark.models import load_target

    t0 = time.monotonic()

    def left() -> float | None:
        return None if budget_seconds is None else budget_seconds - (time.monotonic() - t0)

    def out_of_time() -> bool:
        rem = left()
        return rem is not None and rem <= 0

    out = Path(out_dir)
    stages: dict = {}
    rec = build_target(
        out, cfg=target_cfg, budget_seconds=left(), max_files=max_files, progress=progress
    )
    stages["target"] = rec
    if not rec["done"] or out_of_time():
        return {"done": False, "stages": stages}
    tok = load_tokenizer(out / "tokenizer")
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    tokens = load_tokens(out / "tokens.npz")
    target = load_target(out / "target" / "model", dtype=torch.float32)
    rec = generate_data(
        out / "data",
        target,
        tokens,
        data_cfg or DataConfig(),
        eos_token_id=eos,
        budget_seconds=left(),
        progress=progress,
    )
    stages["data"] = rec
    if not rec["done"] or out_of_time():
        return {"done": False, "stages": stages}
    samples = load_samples(out / "data")
    for kind in kinds:
        final = out / "drafters" / kind / "model" / "train_record.json"
        if final.exists():
            stages[kind] = load_json(final)
            continue
        rec = train_zoo_drafter(
            out / "drafters" / kind,
            kind,
            target,
            out / "target" / "model",
            samples,
            drafter_cfg or DrafterTrainConfig(),
            budget_seconds=left(),
            progress=progress,
            mask_token_id=tok.convert_tokens_to_ids("<|mask|>"),
        )
        stages[kind] = rec
        if not rec["done"] or out_of_time():
            return {"done": False, "stages": stages}
    acfg = assistant_cfg or ASSISTANT_CONFIG
    if len(tok) > acfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} tokens but the assistant's vocab is smaller")
    rec = train_target(
        out / "assistant",
        acfg,
        tokens,
        budget_seconds=left(),
        eos_token_id=eos,
        progress=progress,
    )
    stages["assistant"] = rec
    return {"done": bool(rec["done"]), "stages": stages}
