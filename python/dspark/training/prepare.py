"""Build a target cache from conversations: tokenise, run the target in batches, write shards."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from dspark.training.data import tokenize_conversation
from dspark.training.feature_cache import CacheWriter, target_outputs

__all__ = ["build_cache"]


def build_cache(
    target: Any,
    tokenizer: Any,
    conversations: Iterable[Sequence[dict[str, str]]],
    out: str | Path,
    feature_layers: Sequence[int],
    *,
    system_prompt: str | None = None,
    max_length: int = 4096,
    min_loss_tokens: int = 2,
    batch_size: int = 8,
    feature_dtype: str = "bfloat16",
    last_dtype: str = "bfloat16",
    shard_tokens: int = 1 << 20,
    overwrite: bool = False,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenise ``conversations`` and cache the target's features (see :mod:`.cache`).

    Samples with fewer than ``min_loss_tokens`` assistant tokens are dropped (reference: 14).
    The target runs on right-padded batches with an attention mask; padding rows are discarded.
    Under torch.distributed (e.g. ``torchrun ... dspark prepare``) process r handles samples
    ``i % world == r`` and rank 0 merges the parts; the cache (and its sample order) is the same
    for any number of processes.

    Returns
    -------
    dict
        The manifest (``num_samples``, ``num_tokens``, ``bytes_per_token``, ...).
    """
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from dspark.training.feature_cache import merge_parts

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    dev = target.get_input_embeddings().weight.device
    writer = CacheWriter(
        out,
        target,
        feature_layers,
        feature_dtype=feature_dtype,
        last_dtype=last_dtype,
        shard_tokens=shard_tokens,
        overwrite=overwrite,
        part=f"r{rank:05d}-" if world > 1 else "",
        meta={
            "system_prompt": system_prompt,
            "max_length": max_length,
            "min_loss_tokens": min_loss_tokens,
            "chat_template": getattr(tokenizer, "chat_template", None),
            **(meta or {}),
        },
    )
    batch: list[Any] = []
    ids_of: list[int] = []

    def flush() -> None:
        if not batch:
            return
        width = max(s.input_ids.shape[0] for s in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        att = torch.zeros(len(batch), width, dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, : s.input_ids.shape[0]] = s.input_ids
            att[i, : s.input_ids.shape[0]] = 1
        feat, last = target_outputs(target, ids.to(dev), att.to(dev), feature_layers)
        for i, s in enumerate(batch):
            n = s.input_ids.shape[0]
            writer.add(s.input_ids, s.loss_mask, feat[i, :n], last[i, :n], sample_id=ids_of[i])
        batch.clear()
        ids_of.clear()

    for idx, conv in enumerate(tqdm(conversations, disable=not progress or rank, desc="cache")):
        if idx % world != rank:
            continue
        s = tokenize_conversation(
            tokenizer, conv, system_prompt=system_prompt, max_length=max_length
        )
        if int(s.loss_mask.sum()) < min_loss_tokens:
            continue
        batch.append(s)
        ids_of.append(idx)
        if len(batch) == batch_size:
            flush()
    flush()
    manifest = writer.close()
    if world > 1:
        dist.barrier()
        if rank == 0:
            manifest = merge_parts(out, [f"r{r:05d}-" for r in range(world)])
        dist.barrier()
    return manifest
