"""``dspark eval``: evaluate drafters on prompt files (see :func:`dspark.eval.evaluate`).

The settings are the fields of :class:`EvalRun` (what to load and where to write) and of
:class:`dspark.eval.EvalConfig` (how to evaluate), in one flat namespace: every flag below sets
the key of the same name (``--no-baseline`` sets ``baseline`` to false), and ``--config`` /
``--set`` may set any of them, including the EvalConfig fields without a flag
(``--set warmup=false``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspark.cli._settings import add_config_arguments, add_flag, construct


@dataclass
class EvalRun:
    """What ``dspark eval`` loads and writes (the rest of its settings are an EvalConfig).

    ``prompts`` is a list of JSONL files or a mapping benchmark name -> file; ``drafter`` is a
    list of ``"NAME=DIR"`` (as the flag) or a mapping name -> directory;
    ``prompt_lookup`` > 0 adds the prompt-lookup peer with that many tokens; ``assistant`` adds
    the assisted peer.
    """

    target: str
    prompts: Sequence[str] | Mapping[str, str]
    output: str
    drafter: Sequence[str] | Mapping[str, str] = ()
    assistant: str | None = None
    prompt_lookup: int = 0
    plots: bool = True
    device: str = "cpu"
    dtype: str | None = None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="acceptance length, confidence diagnostics and speed of drafters on prompt files",
        description="Evaluate drafters against a target on JSONL prompt files "
        '({"turns": [...]} or {"input_ids": [...]} per line); writes report.md, report.json, '
        "plots and a resumable per-prompt cache to --output.",
    )
    add_flag(p, "--target", help="local Hugging Face model directory (required)")
    add_flag(
        p,
        "--drafter",
        action="append",
        metavar="NAME=DIR",
        help="drafter checkpoint (save_pretrained directory); repeatable",
    )
    add_flag(p, "--prompts", nargs="+", help="JSONL prompt files (required)")
    add_flag(p, "--output", help="output directory (report and cache; required)")
    add_flag(p, "--max-new-tokens", type=int)
    add_flag(p, "--temperature", type=float)
    add_flag(p, "--seed", type=int)
    add_flag(p, "--batch-size", type=int)
    add_flag(p, "--max-samples", type=int, help="prompts per file")
    add_flag(p, "--num-draft-tokens", type=int)
    add_flag(p, "--thresholds", type=float, nargs="*")
    add_flag(p, "--threshold-mode", choices=["cumulative", "per_position"])
    add_flag(
        p,
        "--online-thresholds",
        type=float,
        nargs="*",
        help="also decode with these confidence thresholds (DSpark; wall-clock per threshold)",
    )
    add_flag(
        p, "--no-baseline", key="baseline", action="store_false", help="skip target-only decoding"
    )
    add_flag(p, "--assistant", help="HF draft model directory (assisted peer)")
    add_flag(
        p,
        "--prompt-lookup",
        type=int,
        metavar="N",
        help="also time prompt-lookup decoding with N tokens (0: off)",
    )
    add_flag(p, "--no-resume", key="resume", action="store_false", help="recompute cached prompts")
    add_flag(p, "--no-plots", key="plots", action="store_false")
    add_flag(p, "--no-progress", key="progress", action="store_false")
    add_flag(p, "--device", help="(default: cpu)")
    add_flag(p, "--dtype", choices=["float32", "bfloat16", "float16"])
    add_config_arguments(p, "EvalRun and EvalConfig settings")
    p.set_defaults(func=run)


def _drafter_dirs(spec: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(spec, Mapping):
        return dict(spec)
    out = {}
    for item in [spec] if isinstance(spec, str) else spec:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"dspark eval: --drafter expects NAME=DIR, got {item!r}")
        out[name] = path
    return out


def _tokenizer(path: str, vocab: int) -> Any:
    """The target's tokenizer when its directory has one, else a byte-level fallback."""
    from dspark.eval import ByteTokenizer

    has_tok = any((Path(path) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    if has_tok:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    print(f"dspark eval: {path} has no tokenizer; using a byte-level fallback", file=sys.stderr)
    return ByteTokenizer(vocab)


def run(args: argparse.Namespace) -> int:
    import torch

    from dspark.eval import EvalConfig, evaluate
    from dspark.models import load_drafter, load_target

    run_cfg, cfg = construct(args, EvalRun, EvalConfig)
    dtype = None if run_cfg.dtype is None else getattr(torch, run_cfg.dtype)
    drafter_dirs = _drafter_dirs(run_cfg.drafter)
    target = load_target(run_cfg.target, dtype=dtype, device=run_cfg.device)
    drafters = {
        n: load_drafter(p, target).to(run_cfg.device).eval() for n, p in drafter_dirs.items()
    }
    assistant = None
    peers = list(cfg.peers)
    if run_cfg.assistant:
        assistant = load_target(run_cfg.assistant, dtype=dtype, device=run_cfg.device)
        peers.append("assisted")
    if run_cfg.prompt_lookup > 0:
        peers.append("prompt_lookup")
        cfg.prompt_lookup_num_tokens = run_cfg.prompt_lookup
    cfg.peers = tuple(dict.fromkeys(peers))
    cfg.thresholds = tuple(cfg.thresholds)
    cfg.online_thresholds = tuple(cfg.online_thresholds)
    vocab = int(target.get_output_embeddings().weight.shape[0])
    report = evaluate(
        target,
        drafters,
        [run_cfg.prompts] if isinstance(run_cfg.prompts, str) else run_cfg.prompts,
        tokenizer=_tokenizer(run_cfg.target, vocab),
        assistant_model=assistant,
        output_dir=run_cfg.output,
        config=cfg,
        plots=run_cfg.plots,
    )
    print(report.format_table())
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {Path(run_cfg.output) / 'report.md'}")
    return 0
