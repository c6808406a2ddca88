"""``dspark zoo``: build, export and check the micro model zoo.

``dspark zoo target`` trains the tokenizer and target LM only; ``dspark zoo build`` runs every
stage (target, target-sampled data, the three drafters, the assistant LM); ``dspark zoo export``
copies a finished build into the package; ``dspark zoo verify`` checks a zoo's checksums.
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="build, export and verify the micro model zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="STEP")
    for name, helptext, func in (
        ("target", "corpus, tokenizer and target LM (resumable)", run_target),
        ("build", "every stage: target, data, drafters, assistant (resumable)", run_build),
    ):
        t = zsub.add_parser(name, help=helptext)
        t.add_argument("--out", default="zoo_build", help="output directory (default: zoo_build)")
        t.add_argument(
            "--budget-minutes",
            type=float,
            default=None,
            help="stop (after a checkpoint) when this much time has passed; rerun to resume",
        )
        t.add_argument("--steps", type=int, default=None, help="target training steps")
        t.set_defaults(func=func)
    b = zsub.choices["build"]
    b.add_argument("--drafter-steps", type=int, default=None, help="optimizer steps per drafter")
    b.add_argument("--samples", type=int, default=None, help="target-sampled training sequences")
    e = zsub.add_parser("export", help="copy a finished build into the package (or --to DIR)")
    e.add_argument("--from", dest="src", default="zoo_build", help="build directory")
    e.add_argument("--to", default=None, help="destination (default: the package's zoo)")
    e.set_defaults(func=run_export)
    v = zsub.add_parser("verify", help="check a zoo's files against its manifest")
    v.add_argument("path", nargs="?", default=None, help="zoo directory (default: the package's)")
    v.set_defaults(func=run_verify)


def _budget(args: argparse.Namespace) -> float | None:
    return None if args.budget_minutes is None else 60.0 * args.budget_minutes


def _target_cfg(args: argparse.Namespace):
    from dspark.zoo.target_lm import TargetTrainConfig

    return TargetTrainConfig() if args.steps is None else TargetTrainConfig(total_steps=args.steps)


def run_target(args: argparse.Namespace) -> int:
    from dspark.zoo.build import build_target

    record = build_target(args.out, cfg=_target_cfg(args), budget_seconds=_budget(args))
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from dspark.zoo.build import build_zoo
    from dspark.zoo.drafters import DataConfig, DrafterTrainConfig

    data = DataConfig() if args.samples is None else DataConfig(num_samples=args.samples)
    drafter = (
        DrafterTrainConfig()
        if args.drafter_steps is None
        else DrafterTrainConfig(steps=args.drafter_steps)
    )
    res = build_zoo(
        args.out,
        budget_seconds=_budget(args),
        target_cfg=_target_cfg(args),
        data_cfg=data,
        drafter_cfg=drafter,
    )
    for name, rec in res["stages"].items():
        keep = ("done", "steps", "final_loss", "final_tau_estimate", "answer_tokens")
        print(f"{name:10s}", json.dumps({k: rec[k] for k in keep if k in rec}))
    if not res["done"]:
        print(f"not finished: rerun `dspark zoo build --out {args.out}` to resume")
        return 1
    print(f"done: `dspark zoo export --from {args.out}` copies it into the package")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from dspark.zoo.package import ZOO_DIR, export_zoo

    dest = args.to or ZOO_DIR
    manifest = export_zoo(args.src, dest)
    print(
        f"exported {len(manifest['files'])} files, {manifest['total_bytes'] / 1e6:.1f} MB -> {dest}"
    )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from dspark.zoo.package import ZOO_DIR, verify_zoo

    manifest = verify_zoo(args.path)
    print(f"ok: {len(manifest['files'])} files match {args.path or ZOO_DIR}/MANIFEST.json")
    return 0
