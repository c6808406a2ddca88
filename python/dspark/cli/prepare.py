"""``dspark prepare``: tokenise conversations and build a target cache (or estimate its size).

The settings are the keyword parameters of :func:`prepare`. Several processes: ``torchrun
--nproc-per-node N -m dspark.cli prepare ...``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from dspark.cli._settings import add_config_arguments, add_flag, call

_DTYPES = ["float32", "bfloat16", "float16", "fp8"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenise conversations and build a target cache")
    add_flag(p, "--target", help="local Hugging Face model directory (required)")
    add_flag(p, "--data", help="JSONL of {conversations} or {turns} (required)")
    add_flag(p, "--out", help="cache directory (required)")
    add_flag(
        p,
        "--feature-layers",
        type=int,
        nargs="+",
        help="0-based target layers (default: the drafter default, 5 layers)",
    )
    add_flag(p, "--feature-dtype", choices=_DTYPES, help="(default: bfloat16)")
    add_flag(p, "--last-dtype", choices=_DTYPES, help="(default: bfloat16)")
    add_flag(
        p,
        "--system-prompt",
        help="insert when a conversation has none (use the same at evaluation)",
    )
    add_flag(p, "--max-length", type=int, help="(default: 4096)")
    add_flag(p, "--min-loss-tokens", type=int, help="(default: 14)")
    add_flag(p, "--batch-size", type=int, help="(default: 8)")
    add_flag(p, "--overwrite", action="store_true")
    add_flag(
        p,
        "--estimate",
        action="store_true",
        help="only print the estimated cache size (no target run)",
    )
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return call(args, prepare)


def prepare(
    *,
    target: str,
    data: str,
    out: str,
    feature_layers: Sequence[int] | None = None,
    feature_dtype: str = "bfloat16",
    last_dtype: str = "bfloat16",
    system_prompt: str | None = None,
    max_length: int = 4096,
    min_loss_tokens: int = 14,
    batch_size: int = 8,
    overwrite: bool = False,
    estimate: bool = False,
) -> int:
    """Build the target cache of ``data`` in ``out`` (:func:`dspark.training.build_cache`).

    With ``estimate``, only tokenise and print the estimated cache size as JSON.
    """
    from dspark.models import default_feature_layers, load_target
    from dspark.training.data import load_conversations, tokenize_conversation
    from dspark.training.feature_cache import estimate_bytes_per_token

    if estimate:
        from transformers import AutoConfig, AutoTokenizer

        cfg = AutoConfig.from_pretrained(target, local_files_only=True).get_text_config()
        layers = feature_layers or default_feature_layers(cfg.num_hidden_layers)
        tok = AutoTokenizer.from_pretrained(target, local_files_only=True)
        ntok = nloss = 0
        for conv in load_conversations(data):
            s = tokenize_conversation(tok, conv, system_prompt=system_prompt, max_length=max_length)
            ntok += s.input_ids.shape[0]
            nloss += int(s.loss_mask[1:].sum())
        frac = nloss / max(1, ntok)
        bpt = estimate_bytes_per_token(
            cfg.hidden_size, len(layers), feature_dtype, last_dtype, frac
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
    model = load_target(target, device=dev)
    layers = feature_layers or default_feature_layers(
        model.config.get_text_config().num_hidden_layers
    )
    tok = AutoTokenizer.from_pretrained(target, local_files_only=True)
    m = build_cache(
        model,
        tok,
        load_conversations(data),
        out,
        layers,
        system_prompt=system_prompt,
        max_length=max_length,
        min_loss_tokens=min_loss_tokens,
        batch_size=batch_size,
        feature_dtype=feature_dtype,
        last_dtype=last_dtype,
        overwrite=overwrite,
        progress=True,
        meta={"source": str(data)},
    )
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({k: m[k] for k in ("num_samples", "num_tokens", "bytes_per_token")}))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
