"""Entry point of spawned training processes (module level so ``spawn`` can import it)."""

from __future__ import annotations

import os


def run(rank: int, world: int, port: int, cfg_dicts: list) -> None:
    import torch

    from dspark.training import TrainConfig, train

    torch.set_num_threads(1)
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    for cfg in cfg_dicts:  # several jobs share one spawn (process start-up dominates)
        if "cache_job" in cfg:
            build_cache_job(**cfg["cache_job"])
        else:
            train(TrainConfig.from_dict(cfg))


def build_cache_job(target_dir: str, out: str, layers: list) -> None:
    import torch.distributed as dist

    from dspark.models import load_target
    from dspark.training import build_cache
    from tests.training.conftest import CONVERSATIONS, tiny_tokenizer

    dist.init_process_group("gloo")
    try:
        build_cache(
            load_target(target_dir),
            tiny_tokenizer(),
            CONVERSATIONS,
            out,
            layers,
            feature_dtype="float32",
            last_dtype="float32",
            batch_size=3,
        )
    finally:
        dist.destroy_process_group()
