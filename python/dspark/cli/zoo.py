"""``dspark zoo``: build, export and check the micro model zoo.

``dspark zoo target`` trains the tokenizer and target LM only; ``dspark zoo build`` runs every
stage (target, target-sampled data, the three drafters, the assistant LM); ``dspark zoo export``
copies a finished build into the package; ``dspark zoo verify`` checks a zoo's checksums. Each
step's settings are the keyword parameters of its function below.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dspark.cli._settings import add_config_arguments, add_flag, call


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="build, export and verify the micro model zoo")
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="STEP")
    steps = {}
    for name, helptext, func in (
        ("target", "corpus, tokenizer and target LM (resumable)", zoo_target),
        ("build", "every stage: target, data, drafters, assistant (resumable)", zoo_build),
    ):
        t = steps[name] = zsub.add_parser(name, help=helptext)
        add_flag(t, "--out", help="output directory (default: zoo_build)")
        add_flag(
            t,
            "--budget-minutes",
            type=float,
            help="stop (after a checkpoint) when this much time has passed; rerun to resume",
        )
        add_flag(t, "--steps", type=int, help="target training steps")
        t.set_defaults(step=func)
    b = steps["build"]
    add_flag(b, "--drafter-steps", type=int, help="optimizer steps per drafter")
    add_flag(b, "--samples", type=int, help="target-sampled training sequences")
    e = zsub.add_parser("export", help="copy a finished build into the package (or --to DIR)")
    add_flag(e, "--from", key="src", help="build directory (default: zoo_build)")
    add_flag(e, "--to", help="destination (default: the package's zoo)")
    e.set_defaults(step=zoo_export)
    v = zsub.add_parser("verify", help="check a zoo's files against its manifest")
    add_flag(v, "path", nargs="?", help="zoo directory (default: the package's)")
    v.set_defaults(step=zoo_verify)
    for step in (*steps.values(), e, v):
        add_config_arguments(step)
        step.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return call(args, args.step)


def _budget(budget_minutes: float | None) -> float | None:
    return None if budget_minutes is None else 60.0 * budget_minutes


def _target_cfg(steps: int | None) -> Any:
    from dspark.zoo.target_lm import TargetTrainConfig

    return TargetTrainConfig() if steps is None else TargetTrainConfig(total_steps=steps)


def zoo_target(
    *, out: str = "zoo_build", budget_minutes: float | None = None, steps: int | None = None
) -> int:
    """Train the tokenizer and the target LM into ``out`` (resumable)."""
    from dspark.zoo.build import build_target

    record = build_target(out, cfg=_target_cfg(steps), budget_seconds=_budget(budget_minutes))
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))
    return 0


def zoo_build(
    *,
    out: str = "zoo_build",
    budget_minutes: float | None = None,
    steps: int | None = None,
    drafter_steps: int | None = None,
    samples: int | None = None,
) -> int:
    """Run every stage of the zoo build into ``out``; 1 when the budget ran out first."""
    from dspark.zoo.build import build_zoo
    from dspark.zoo.drafters import DataConfig, DrafterTrainConfig

    data = DataConfig() if samples is None else DataConfig(num_samples=samples)
    drafter = (
        DrafterTrainConfig() if drafter_steps is None else DrafterTrainConfig(steps=drafter_steps)
    )
    res = build_zoo(
        out,
        budget_seconds=_budget(budget_minutes),
        target_cfg=_target_cfg(steps),
        data_cfg=data,
        drafter_cfg=drafter,
    )
    for name, rec in res["stages"].items():
        keep = ("done", "steps", "final_loss", "final_tau_estimate", "answer_tokens")
        print(f"{name:10s}", json.dumps({k: rec[k] for k in keep if k in rec}))
    if not res["done"]:
        print(f"not finished: rerun `dspark zoo build --out {out}` to resume")
        return 1
    print(f"done: `dspark zoo export --from {out}` copies it into the package")
    return 0


def zoo_export(*, src: str = "zoo_build", to: str | None = None) -> int:
    """Copy a finished build ``src`` into the package's zoo (or ``to``)."""
    from dspark.zoo.package import ZOO_DIR, export_zoo

    dest = to or ZOO_DIR
    manifest = export_zoo(src, dest)
    print(
        f"exported {len(manifest['files'])} files, {manifest['total_bytes'] / 1e6:.1f} MB -> {dest}"
    )
    return 0


def zoo_verify(*, path: str | None = None) -> int:
    """Check the files of the zoo at ``path`` (default: the package's) against its manifest."""
    from dspark.zoo.package import ZOO_DIR, verify_zoo

    manifest = verify_zoo(path)
    print(f"ok: {len(manifest['files'])} files match {path or ZOO_DIR}/MANIFEST.json")
    return 0
