"""Drafter training: data preparation, compact target cache, losses and the trainer.

Example
-------
>>> from dspark.training import TrainConfig, train                      # doctest: +SKIP
>>> train(TrainConfig(kind="dspark", target="qwen3-4b/", cache="cache/",
...                   output_dir="runs/dspark"))                          # doctest: +SKIP
"""

from __future__ import annotations

from dspark.training.batching import pack, sample_anchors, step_samples
from dspark.training.config import TrainConfig
from dspark.training.data import load_conversations, render_prompt, tokenize_conversation
from dspark.training.feature_cache import CacheWriter, TargetCache, estimate_bytes_per_token
from dspark.training.losses import LossParts, block_loss, eagle3_loss
from dspark.training.prepare import build_cache
from dspark.training.trainer import OnlineSource, Trainer, train, warmup_cosine

__all__ = [
    "CacheWriter",
    "LossParts",
    "OnlineSource",
    "TargetCache",
    "TrainConfig",
    "Trainer",
    "block_loss",
    "build_cache",
    "eagle3_loss",
    "estimate_bytes_per_token",
    "load_conversations",
    "pack",
    "render_prompt",
    "sample_anchors",
    "step_samples",
    "tokenize_conversation",
    "train",
    "warmup_cosine",
]
