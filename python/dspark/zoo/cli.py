"""``dspark zoo``: build the micro model zoo (``dspark zoo target`` trains the target LM)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="build the micro model zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="STEP")
    t = zsub.add_parser("target", help="corpus, tokenizer and target LM (resumable)")
    t.add_argument("--out", default="zoo_build", help="output directory (default: zoo_build)")
    t.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="stop (after a checkpoint) when this much time has passed; rerun to resume",
    )
    t.add_argument("--steps", type=int, default=None, help="total training steps")
    t.set_defaults(func=run_target)


def run_target(args: argparse.Namespace) -> int:
    from dspark.zoo.build import build_target
    from dspark.zoo.target import TargetTrainConfig

    cfg = TargetTrainConfig() if args.steps is None else TargetTrainConfig(total_steps=args.steps)
    budget = None if args.budget_minutes is None else 60.0 * args.budget_minutes
    record = build_target(args.out, cfg=cfg, budget_seconds=budget)
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))
    return 0
