"""``dspark train``: train a drafter (``torchrun ... -m dspark.cli train`` for several processes).

The settings are the fields of :class:`dspark.training.TrainConfig`, given as a JSON
``--config`` file and ``--set`` overrides.
"""

from __future__ import annotations

import argparse
import json

from dspark.cli._settings import add_config_arguments, construct


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a drafter (torchrun for several processes)")
    add_config_arguments(p, "training settings (see TrainConfig)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dspark.training.config import TrainConfig
    from dspark.training.trainer import train

    (cfg,) = construct(args, TrainConfig)
    history = train(cfg)
    if history:
        print(json.dumps(history[-1]))
    return 0
