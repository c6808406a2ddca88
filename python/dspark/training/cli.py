"""``dspark prepare`` (tokenise + target cache) and ``dspark train --config``."""

from __future__ import annotations

import argparse
import json


def add_prepare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenise conversations and build a target cache")
    p.add_argument("--target", required=True, help="local Hugging Face model directory")
    p.add_argument("--data", required=True, help="JSONL of {conversations} or {turns}")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument(
        "--feature-layers",
        type=int,
        nargs="+",
        default=None,
        help="0-based target layers (default: the drafter default, 5 layers)",
    )
    p.add_argument(
        "--feature-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16", "fp8"]
    )
    p.add_argument(
        "--last-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16", "fp8"]
    )
    p.add_argument(
        "--system-prompt",
        default=None,
        help="insert when a conversation has none (use the same at evaluation)",
    )
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--min-loss-tokens", type=int, default=14)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="only print the estimated cache size (no target run)",
    )
    p.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from dspark.models import default_feature_layers, load_target
    from dspark.training.data import load_conversations, tokenize_conversation
    from dspark.training.feature_cache import estimate_bytes_per_token

    if args.estimate:
        from transformers import AutoConfig, AutoTokenizer

        cfg = AutoConfig.from_pretrained(args.target, local_files_only=True).get_text_config()
        layers = args.feature_layers or default_feature_layers(cfg.num_hidden_layers)
        tok = AutoTokenizer.from_pretrained(args.target, local_files_only=True)
        ntok = nloss = 0
        for conv in load_conversations(args.data):
            s = tokenize_conversation(
                tok, conv, system_prompt=args.system_prompt, max_length=args.max_length
            )
            ntok += s.input_ids.shape[0]
            nloss += int(s.loss_mask[1:].sum())
        frac = nloss / max(1, ntok)
        bpt = estimate_bytes_per_token(
            cfg.hidden_size, len(layers), args.feature_dtype, args.last_dtype, frac
        )
        print(
            json.dumps(
                {
                    "tokens": ntok,
                    "loss_fraction": round(frac, 4),
                    "bytes_per_token": round(bpt, 1),
                    "total_bytes": int(bpt * ntok),
                }
            )
        )
        return 0
    import os

    import torch
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from dspark.training.prepare import build_cache

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    dev = "cuda" if torch.cuda.is_available() else None
    target = load_target(args.target, device=dev)
    layers = args.feature_layers or default_feature_layers(
        target.config.get_text_config().num_hidden_layers
    )
    tok = AutoTokenizer.from_pretrained(args.target, local_files_only=True)
    m = build_cache(
        target,
        tok,
        load_conversations(args.data),
        args.out,
        layers,
        system_prompt=args.system_prompt,
        max_length=args.max_length,
        min_loss_tokens=args.min_loss_tokens,
        batch_size=args.batch_size,
        feature_dtype=args.feature_dtype,
        last_dtype=args.last_dtype,
        overwrite=args.overwrite,
        progress=True,
        meta={"source": str(args.data)},
    )
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({k: m[k] for k in ("num_samples", "num_tokens", "bytes_per_token")}))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a drafter (torchrun for several processes)")
    p.add_argument("--config", required=True, help="JSON training config (see TrainConfig)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a config field, e.g. --set max_steps=100",
    )
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from dspark.training.config import TrainConfig
    from dspark.training.trainer import train

    with open(args.config, encoding="utf-8") as f:
        d = json.load(f)
    for item in args.set:
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            d[key] = json.loads(val)
        except json.JSONDecodeError:
            d[key] = val
    history = train(TrainConfig.from_dict(d))
    if history:
        print(json.dumps(history[-1]))
    return 0


def add_regenerate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regenerate", help="regenerate assistant turns with the target (resumable)")
    p.add_argument("--data", required=True, help="JSONL of {conversations} or {turns}")
    p.add_argument("--out", required=True, help="output JSONL (resumed if it exists)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--target", help="local model directory (generate with dspark)")
    src.add_argument("--url", help="OpenAI-compatible server base URL")
    p.add_argument("--model", default="default", help="model name sent to the server")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_regenerate)


def run_regenerate(args: argparse.Namespace) -> int:
    from dspark.training.data import load_conversations
    from dspark.training.regenerate import LocalBackend, OpenAIBackend, regenerate

    if args.url:
        backend = OpenAIBackend(
            args.url,
            args.model,
            system_prompt=args.system_prompt,
            sampling={
                "temperature": args.temperature,
                "top_p": args.top_p,
                "top_k": args.top_k,
                "max_tokens": args.max_new_tokens,
            },
        )
    else:
        from transformers import AutoTokenizer

        from dspark.models import load_target

        backend = LocalBackend(
            load_target(args.target),
            AutoTokenizer.from_pretrained(args.target, local_files_only=True),
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            system_prompt=args.system_prompt,
            seed=args.seed,
        )
    n = regenerate(load_conversations(args.data), backend, args.out, batch_size=args.batch_size)
    print(json.dumps({"written": n, "out": str(args.out)}))
    return 0
