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
    for cfg in cfg_dicts:  # several runs share one spawn (process start-up dominates)
        train(TrainConfig.from_dict(cfg))
