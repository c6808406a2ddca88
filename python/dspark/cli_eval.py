"""``dspark eval``: evaluate drafters on prompt files (see :func:`dspark.eval.evaluate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="acceptance length, confidence diagnostics and speed of drafters on prompt files",
        description="Evaluate drafters against a target on JSONL prompt files "
        '({"turns": [...]} or {"input_ids": [...]} per line); writes report.md, report.json, '
        "plots and a resumable per-prompt cache to --output.",
    )
    p.add_argument("--target", required=True, help="local Hugging Face model directory")
    p.add_argument(
        "--drafter",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="drafter checkpoint (save_pretrained directory); repeatable",
    )
    p.add_argument("--prompts", nargs="+", required=True, help="JSONL prompt files")
    p.add_argument("--output", required=True, help="output directory (report and cache)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=980406)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--max-samples", type=int, default=None, help="prompts per file")
    p.add_argument("--num-draft-tokens", type=int, default=None)
    p.add_argument("--thresholds", type=float, nargs="*", default=None)
    p.add_argument("--threshold-mode", choices=["cumulative", "per_position"], default="cumulative")
    p.add_argument(
        "--online-thresholds",
        type=float,
        nargs="*",
        default=(),
        help="also decode with these confidence thresholds (DSpark; wall-clock per threshold)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip target-only decoding")
    p.add_argument("--assistant", default=None, help="HF draft model directory (assisted peer)")
    p.add_argument(
        "--prompt-lookup",
        type=int,
        default=0,
        metavar="N",
        help="also time prompt-lookup decoding with N tokens (0: off)",
    )
    p.add_argument("--no-resume", action="store_true", help="recompute cached prompts")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.set_defaults(func=run)


def _tokenizer(path: str, vocab: int):
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

    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    drafter_dirs = {}
    for spec in args.drafter:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"dspark eval: --drafter expects NAME=DIR, got {spec!r}")
        drafter_dirs[name] = path
    target = load_target(args.target, dtype=dtype, device=args.device)
    drafters = {n: load_drafter(p, target).to(args.device).eval() for n, p in drafter_dirs.items()}
    assistant = None
    peers = []
    if args.assistant:
        assistant = load_target(args.assistant, dtype=dtype, device=args.device)
        peers.append("assisted")
    if args.prompt_lookup > 0:
        peers.append("prompt_lookup")
    vocab = int(target.get_output_embeddings().weight.shape[0])
    cfg = EvalConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        num_draft_tokens=args.num_draft_tokens,
        threshold_mode=args.threshold_mode,
        online_thresholds=tuple(args.online_thresholds),
        baseline=not args.no_baseline,
        peers=tuple(peers),
        prompt_lookup_num_tokens=max(args.prompt_lookup, 1),
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    if args.thresholds is not None:
        cfg.thresholds = tuple(args.thresholds)
    report = evaluate(
        target,
        drafters,
        args.prompts,
        tokenizer=_tokenizer(args.target, vocab),
        assistant_model=assistant,
        output_dir=args.output,
        config=cfg,
        plots=not args.no_plots,
    )
    print(report.format_table())
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {Path(args.output) / 'report.md'}")
    return 0
