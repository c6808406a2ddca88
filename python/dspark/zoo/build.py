"""Building the zoo: ``dspark zoo target`` (tokenizer + target LM), resumable with a time budget.

Layout of the output directory::

    tokenizer/          tokenizer.json (+ config), chat template = concatenated turns
    tokens.npz          train token stream (uint16) and its SHA-256
    prompts/{code,prose}.jsonl   held-out prompts ({"turns": [...]})
    target/checkpoint.pt, target/model/, target/train_record.json
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from dspark.zoo.corpus import build_corpus
from dspark.zoo.target import TargetTrainConfig, tokenize_docs, train_target
from dspark.zoo.tokenizer import load_tokenizer, train_tokenizer

__all__ = ["build_target", "load_tokens"]


def load_tokens(path: Path) -> np.ndarray:
    """Load the token stream and check its checksum (a truncated or edited file is an error)."""
    with np.load(path) as f:
        tokens, digest = f["tokens"], str(f["sha256"])
    if hashlib.sha256(tokens.tobytes()).hexdigest() != digest:
        raise ValueError(f"{path}: checksum mismatch (corrupt token cache); delete it to rebuild")
    return tokens


def _save_tokens(path: Path, tokens: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, tokens=tokens, sha256=hashlib.sha256(tokens.tobytes()).hexdigest())
    os.replace(tmp, path)


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
        corpus = build_corpus(max_files=max_files)
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
